#!/usr/bin/env bash
# A real issuerisk cluster on one machine: a Spark standalone master and worker, a Ray head and worker node,
# and a Hive metastore in PostgreSQL, each its own process(es), all reached at 127.0.0.1.
#
#   infra/local-cluster.sh up       start what is not running, then print the environment that points issuerisk at it
#   infra/local-cluster.sh env      print that environment only:  eval "$(infra/local-cluster.sh env)"
#   infra/local-cluster.sh status   each component up or down (exit 1 when one is down)
#   infra/local-cluster.sh down     stop everything; no process or listening port is left behind
#   infra/local-cluster.sh purge    down, then delete the state (metastore database, logs, tokens)
#
# State (logs, pids, tokens, the metastore's password, Spark's authentication secret, Spark's work dir) lives in
# ${ISSUERISK_CLUSTER_DIR:-$HOME/.issuerisk/local-cluster}. Ports and sizes come from the ISSUERISK_CLUSTER_* variables
# below. See infra/README.md for what each part is for and what is not loopback-only (Ray).
#
# Secrets never go on a command line (ps shows command lines to every user): Spark's master, worker and every
# application share a generated secret (spark.authenticate) handed over in the environment or a 0600 file, psql
# reads its statements from standard input. A folder is only deleted by purge when it holds this script's marker,
# and a process is only stopped when it belongs to the session this script started (same boot, same leader).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${ISSUERISK_VENV:-$REPO/.venv}
PY=$VENV/bin/python
STATE=${ISSUERISK_CLUSTER_DIR:-$HOME/.issuerisk/local-cluster}
HOST=127.0.0.1

SPARK_PORT=${ISSUERISK_CLUSTER_SPARK_PORT:-7077}
SPARK_UI_PORT=${ISSUERISK_CLUSTER_SPARK_UI_PORT:-8080}
SPARK_WORKER_PORT=${ISSUERISK_CLUSTER_SPARK_WORKER_PORT:-7078}
SPARK_WORKER_UI_PORT=${ISSUERISK_CLUSTER_SPARK_WORKER_UI_PORT:-8081}
# Scheduling slots, not CPUs: every application gets one core (spark.deploy.defaultCores=1), so a run, two
# `issuerisk sql` clients and `issuerisk serve` each get an executor at the same time.
SPARK_WORKER_CORES=${ISSUERISK_CLUSTER_SPARK_WORKER_CORES:-4}
SPARK_WORKER_MEMORY=${ISSUERISK_CLUSTER_SPARK_WORKER_MEMORY:-4g}
RAY_PORT=${ISSUERISK_CLUSTER_RAY_PORT:-6379}
RAY_CLIENT_PORT=${ISSUERISK_CLUSTER_RAY_CLIENT_PORT:-10001}
# The head runs no tasks by default, so every Ray task and actor lands on the worker node, as on a real cluster.
RAY_HEAD_CPUS=${ISSUERISK_CLUSTER_RAY_HEAD_CPUS:-0}
RAY_WORKER_CPUS=${ISSUERISK_CLUSTER_RAY_WORKER_CPUS:-1}
PG_PORT=${ISSUERISK_CLUSTER_PG_PORT:-55432}
CONNECT_PORT=${ISSUERISK_CLUSTER_CONNECT_PORT:-15002}
JDBC_VERSION=${ISSUERISK_CLUSTER_JDBC_VERSION:-42.7.14}
MAVEN_REPO=${MAVEN_REPO:-https://repo1.maven.org/maven2}
START_TIMEOUT_S=${ISSUERISK_CLUSTER_START_TIMEOUT_S:-180}
METASTORE_DB=metastore
METASTORE_USER=issuerisk

COMPONENTS=(postgres spark-master spark-worker ray-head ray-worker)
LOGS=$STATE/logs
PIDS=$STATE/pids
KEY=$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)
# Ray's socket paths must stay under 108 bytes; a long state path gets its Ray folder in /tmp.
RAY_TMP=$STATE/ray
[ ${#RAY_TMP} -le 40 ] || RAY_TMP=/tmp/issuerisk-ray-$KEY
RAY_TOKEN=$STATE/ray-auth-token
PG_PASSWORD_FILE=$STATE/metastore.password
PG_ADMIN_PASSWORD_FILE=$STATE/postgres-admin.password
SPARK_SECRET_FILE=$STATE/spark-auth.secret
MARKER=.issuerisk-local-cluster
JDBC_JAR=$STATE/jars/postgresql-$JDBC_VERSION.jar

say() { printf '%s\n' "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() { [ "$(id -u)" = 0 ]; }

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && printf '%s' "$dir"
}

# PostgreSQL refuses to run as root, so as root its data lives where the `postgres` user can reach it
# (a home folder of root is closed to it); otherwise under the state folder.
pg_data() {
    if [ -n "${ISSUERISK_CLUSTER_PGDATA:-}" ]; then printf '%s' "$ISSUERISK_CLUSTER_PGDATA"
    elif as_root; then printf '%s' "/var/lib/postgresql/issuerisk-local-cluster/$KEY"
    else printf '%s' "$STATE/postgres"; fi
}

as_pg() { if as_root; then runuser -u postgres -- "$@"; else "$@"; fi; }

listening() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

wait_until() {  # wait_until SECONDS COMPONENT CHECK...: run CHECK until it succeeds, else name the component and its log
    local limit=$1 component=$2 start=$SECONDS
    shift 2
    until "$@"; do
        if [ $((SECONDS - start)) -ge "$limit" ]; then
            say "$component did not come up within ${limit}s; see its log: $LOGS/$component.log"
            tail -n 20 "$LOGS/$component.log" >&2 2>/dev/null || true
            return 1
        fi
        sleep 1
    done
}

boot_id() { cat /proc/sys/kernel/random/boot_id 2>/dev/null || echo unknown; }

start_ticks() { awk '{sub(/.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null; }  # clock ticks after boot the process started at

session_pids() {  # every live process of the session recorded for a component, when that session is still the one we started
    local sid boot ticks now
    sid=$(cat "$PIDS/$1.sid" 2>/dev/null) || return 0
    read -r boot ticks <"$PIDS/$1.owner" 2>/dev/null || return 0
    [ "$boot" = "$(boot_id)" ] || return 0  # recorded before a reboot: that session id may be anyone's now
    now=$(start_ticks "$sid")
    [ -z "$now" ] || [ "$now" = "$ticks" ] || return 0  # its leader's pid is alive but started later: reused, not ours
    ps -eo pid=,sid=,stat= | awk -v s="$sid" '$2 == s && $3 !~ /^Z/ {print $1}'
}

session_alive() { [ -n "$(session_pids "$1")" ]; }

start_session() {  # start_session COMPONENT CMD...: CMD in a new session, its output in the component's log
    local component=$1
    shift
    : >"$LOGS/$component.log"
    setsid "$@" >>"$LOGS/$component.log" 2>&1 </dev/null &
    echo $! >"$PIDS/$component.sid"
    echo "$(boot_id) $(start_ticks $!)" >"$PIDS/$component.owner"
}

stop_session() {  # stop_session COMPONENT GRACE_S: SIGTERM a component's session, then SIGKILL what is left after GRACE_S
    local component=$1 grace=$2 pids tries=0
    pids=$(session_pids "$component")
    [ -z "$pids" ] && { rm -f "$PIDS/$component.sid" "$PIDS/$component.owner"; return 0; }
    kill -TERM $pids 2>/dev/null || true
    while [ -n "$(session_pids "$component")" ] && [ $tries -lt "$grace" ]; do sleep 1; tries=$((tries + 1)); done
    pids=$(session_pids "$component")
    if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; sleep 1; fi
    [ -z "$(session_pids "$component")" ] || { say "$component: processes $(session_pids "$component" | tr '\n' ' ')would not stop"; return 1; }
    rm -f "$PIDS/$component.sid" "$PIDS/$component.owner"
}

# --- PostgreSQL: the metastore's database --------------------------------------------------------------------

ensure_postgres_installed() {
    [ -n "$(pg_bin)" ] && return 0
    command -v apt-get >/dev/null || die "postgres: PostgreSQL is not installed and there is no apt-get; install PostgreSQL (server and client) and run up again"
    as_root || die "postgres: PostgreSQL is not installed; run as root once (apt-get install postgresql) or install it yourself"
    say "postgres: installing the Debian package postgresql (without its default cluster)"
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        mkdir -p /etc/postgresql-common
        echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.conf
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold postgresql; } \
        >"$LOGS/postgres-install.log" 2>&1 || die "postgres: apt-get install postgresql failed; see $LOGS/postgres-install.log"
    [ -n "$(pg_bin)" ] || die "postgres: installed, but no /usr/lib/postgresql/*/bin found; see $LOGS/postgres-install.log"
}

init_postgres() {  # a new database cluster: TCP on 127.0.0.1 only, no Unix socket, passwords (SCRAM) for everything
    local bin=$1 data=$2 pwfile
    [ -f "$PG_ADMIN_PASSWORD_FILE" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$PG_ADMIN_PASSWORD_FILE")
    [ -f "$PG_PASSWORD_FILE" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))' >"$PG_PASSWORD_FILE")
    mkdir -p "$(dirname "$data")"
    as_root && chown postgres:postgres "$(dirname "$data")" && chmod 700 "$(dirname "$data")"
    pwfile=$(dirname "$data")/.initdb-pw-$$
    (umask 077 && cp "$PG_ADMIN_PASSWORD_FILE" "$pwfile")
    as_root && chown postgres "$pwfile"
    as_pg "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
        >>"$LOGS/postgres.log" 2>&1 || { rm -f "$pwfile"; say "postgres: initdb failed; see $LOGS/postgres.log"; return 1; }
    rm -f "$pwfile"
    as_pg touch "$data/$MARKER"
    as_pg sh -c "cat >>'$data/postgresql.conf'" <<EOF
# issuerisk local cluster
listen_addresses = '$HOST'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 60
shared_buffers = 64MB
EOF
    as_pg sh -c "cat >'$data/pg_hba.conf'" <<EOF
# issuerisk local cluster: TCP from 127.0.0.1 only, every role with its password
host  all  all  $HOST/32  scram-sha-256
EOF
}

psql_admin() { PGPASSWORD=$(cat "$PG_ADMIN_PASSWORD_FILE") "$(pg_bin)/psql" -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

start_postgres() {
    local bin data
    ensure_postgres_installed
    bin=$(pg_bin)
    data=$(pg_data)
    if ! as_pg test -f "$data/PG_VERSION"; then
        say "postgres: new database cluster in $data"
        init_postgres "$bin" "$data" || return 1
    fi
    : >>"$LOGS/postgres.log"
    # the root shell opens the log, so the server (user postgres) writes to a file in a folder it cannot open itself
    as_pg "$bin/pg_ctl" -D "$data" -w -t "$START_TIMEOUT_S" start >>"$LOGS/postgres.log" 2>&1 \
        || { say "postgres did not start; see its log: $LOGS/postgres.log"; tail -n 20 "$LOGS/postgres.log" >&2; return 1; }
}

prepare_metastore() {  # the metastore's role, database, JDBC driver and schema, each made when missing
    local password
    password=$(cat "$PG_PASSWORD_FILE")
    if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$METASTORE_USER'")" != 1 ]; then
        # the statement (and its password) on standard input: psql's arguments are visible to every user in ps
        printf "CREATE ROLE %s LOGIN PASSWORD '%s'\n" "$METASTORE_USER" "$password" | psql_admin -f - >>"$LOGS/postgres.log" 2>&1 \
            || { say "postgres: could not create role $METASTORE_USER; see $LOGS/postgres.log"; return 1; }
    fi
    if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$METASTORE_DB'")" != 1 ]; then
        psql_admin -c "CREATE DATABASE $METASTORE_DB OWNER $METASTORE_USER" >>"$LOGS/postgres.log" 2>&1 \
            || { say "postgres: could not create database $METASTORE_DB; see $LOGS/postgres.log"; return 1; }
    fi
    fetch_jdbc_driver || return 1
    if [ "$(psql_admin -d "$METASTORE_DB" -c "SELECT 1 FROM pg_tables WHERE tablename = 'DBS'")" != 1 ]; then
        create_metastore_schema || return 1
    fi
}

fetch_jdbc_driver() {  # PostgreSQL's JDBC driver from Maven Central, checked against its published SHA-1
    [ -f "$JDBC_JAR" ] && return 0
    local url=$MAVEN_REPO/org/postgresql/postgresql/$JDBC_VERSION/postgresql-$JDBC_VERSION.jar sum
    mkdir -p "$(dirname "$JDBC_JAR")"
    curl -fsSL -o "$JDBC_JAR.part" "$url" && sum=$(curl -fsSL "$url.sha1") \
        || { rm -f "$JDBC_JAR.part"; say "postgres: could not download the JDBC driver from $url (set MAVEN_REPO to a mirror)"; return 1; }
    [ "$(sha1sum "$JDBC_JAR.part" | cut -d' ' -f1)" = "${sum:0:40}" ] \
        || { rm -f "$JDBC_JAR.part"; say "postgres: the JDBC driver from $url does not match its SHA-1"; return 1; }
    mv "$JDBC_JAR.part" "$JDBC_JAR"
}

# The whole Hive metastore schema at once, with DataNucleus's SchemaTool, the model in Spark's own Hive jars and
# Hive's own naming settings (HiveConf's datanucleus.* defaults).
# DataNucleus's lazy creation (datanucleus.schema.autoCreateAll on first use) deadlocks on PostgreSQL: the first
# CREATE TABLE adds TBL_PRIVS's foreign key on one connection while its own transaction holds TBLS on another.
create_metastore_schema() {
    local home work rc=0
    home=$(spark_home)
    work=$(mktemp -d "$STATE/schema.XXXXXX")
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("package.jdo", sys.argv[2])' \
        "$(ls "$home"/jars/hive-metastore-*.jar)" "$work" \
        || { rm -rf "$work"; say "postgres: no package.jdo in Spark's hive-metastore jar"; return 1; }
    (umask 077 && cat >"$work/datanucleus.properties" <<EOF
javax.jdo.option.ConnectionURL=jdbc:postgresql://$HOST:$PG_PORT/$METASTORE_DB
javax.jdo.option.ConnectionDriverName=org.postgresql.Driver
javax.jdo.option.ConnectionUserName=$METASTORE_USER
javax.jdo.option.ConnectionPassword=$(cat "$PG_PASSWORD_FILE")
datanucleus.schema.autoCreateAll=true
datanucleus.identifierFactory=datanucleus1
datanucleus.rdbms.useLegacyNativeValueStrategy=true
EOF
    )
    say "postgres: creating the Hive metastore schema"
    (cd "$work" && java -Xmx256m -cp "$JDBC_JAR:$home/jars/*" org.datanucleus.store.schema.SchemaTool -create -api JDO \
        -props datanucleus.properties package.jdo) >>"$LOGS/postgres.log" 2>&1 || rc=$?
    rm -rf "$work"
    [ $rc = 0 ] || { say "postgres: creating the metastore schema failed; see $LOGS/postgres.log"; return 1; }
}

postgres_up() { [ -n "$(pg_bin)" ] && "$(pg_bin)/pg_isready" -q -h "$HOST" -p "$PG_PORT" -t 2; }

stop_postgres() {
    local bin data
    bin=$(pg_bin)
    data=$(pg_data)
    [ -n "$bin" ] && as_pg test -f "$data/postmaster.pid" || return 0
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >>"$LOGS/postgres.log" 2>&1 \
        || { say "postgres would not stop; see $LOGS/postgres.log"; return 1; }
}

# --- Spark standalone --------------------------------------------------------------------------------------------

spark_home() { "$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))'; }

spark_java() {  # spark_java COMPONENT HEAP MAINCLASS ARGS...: one Spark daemon JVM from pyspark's own jars
    local component=$1 heap=$2
    shift 2
    local home scala
    home=$(spark_home)
    scala=$(basename "$(ls "$home"/jars/spark-core_*.jar)" | sed -E 's/spark-core_([0-9.]+)-.*/\1/')  # the launcher's executor command needs it
    # spark.authenticate: master, worker, executors and every application share the secret; Spark reads it from
    # _SPARK_AUTH_SECRET, exported in this subshell only, so it is in no command line
    ( export _SPARK_AUTH_SECRET
      _SPARK_AUTH_SECRET=$(cat "$SPARK_SECRET_FILE")
      start_session "$component" env SPARK_HOME="$home" SPARK_SCALA_VERSION="$scala" SPARK_LOCAL_IP="$HOST" SPARK_LOCAL_HOSTNAME="$HOST" PYSPARK_PYTHON="$PY" \
        SPARK_WORKER_DIR="$STATE/spark/work" SPARK_LOG_DIR="$LOGS" \
        java -Xmx"$heap" -cp "$home/conf:$home/jars/*" -Dspark.authenticate=true \
        -Dspark.deploy.defaultCores=1 -Dspark.master.rest.enabled=false -Dspark.worker.cleanup.enabled=true "$@" )
}

master_json() { "$PY" - "$SPARK_UI_PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=3) as r:
        print(json.load(r).get("aliveworkers", 0))
except Exception:
    print(-1)
EOF
}

start_spark_master() {
    mkdir -p "$STATE/spark/work"
    spark_java spark-master 512m org.apache.spark.deploy.master.Master --host "$HOST" --port "$SPARK_PORT" --webui-port "$SPARK_UI_PORT"
    wait_until "$START_TIMEOUT_S" spark-master spark_master_up
}

spark_master_up() { session_alive spark-master && listening "$SPARK_PORT" && [ "$(master_json)" -ge 0 ]; }

start_spark_worker() {
    spark_java spark-worker 512m org.apache.spark.deploy.worker.Worker "spark://$HOST:$SPARK_PORT" --host "$HOST" \
        --port "$SPARK_WORKER_PORT" --webui-port "$SPARK_WORKER_UI_PORT" --cores "$SPARK_WORKER_CORES" --memory "$SPARK_WORKER_MEMORY" \
        --work-dir "$STATE/spark/work"
    wait_until "$START_TIMEOUT_S" spark-worker spark_worker_up
}

spark_worker_up() { session_alive spark-worker && [ "$(master_json)" -ge 1 ]; }

# --- Ray ------------------------------------------------------------------------------------------------------------

own_folder() {  # own_folder DIR: DIR made 0700 with our marker, or refused when it exists and is not ours
    local dir=$1
    if [ -e "$dir" ] || [ -L "$dir" ]; then
        # ours: a folder (not a link) of this user that holds the marker, is empty, or is the state of an earlier version (pids/)
        [ -d "$dir" ] && [ ! -L "$dir" ] && [ "$(stat -c %u "$dir")" = "$(id -u)" ] \
            && { [ -f "$dir/$MARKER" ] || [ -z "$(ls -A "$dir")" ] || [ -d "$dir/pids" ]; } \
            || die "$dir exists but was not made by this script for this user (no $MARKER, another owner or a link); remove it or set ISSUERISK_CLUSTER_DIR"
        chmod 700 "$dir"
        : >"$dir/$MARKER"
    else
        mkdir -m 700 -p "$dir" && : >"$dir/$MARKER"
    fi
}

start_ray_head() {
    [ -f "$RAY_TOKEN" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_TOKEN")
    own_folder "$RAY_TMP"
    start_session ray-head env RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_TOKEN" RAY_USAGE_STATS_ENABLED=0 "$VENV/bin/ray" start --head --node-ip-address "$HOST" --port "$RAY_PORT" \
        --ray-client-server-port "$RAY_CLIENT_PORT" --num-cpus "$RAY_HEAD_CPUS" --num-gpus 0 --include-dashboard false \
        --dashboard-agent-listen-port $((RAY_PORT + 2)) --min-worker-port $((RAY_PORT + 10)) --max-worker-port $((RAY_PORT + 59)) \
        --temp-dir "$RAY_TMP" --disable-usage-stats
    wait_until "$START_TIMEOUT_S" ray-head ray_head_up
}

ray_head_up() { session_alive ray-head && listening "$RAY_PORT" && grep -q "Ray runtime started" "$LOGS/ray-head.log"; }

start_ray_worker() {
    start_session ray-worker env RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$RAY_TOKEN" RAY_USAGE_STATS_ENABLED=0 "$VENV/bin/ray" start --address "$HOST:$RAY_PORT" --node-ip-address "$HOST" \
        --num-cpus "$RAY_WORKER_CPUS" --num-gpus 0 --dashboard-agent-listen-port $((RAY_PORT + 3)) \
        --min-worker-port $((RAY_PORT + 60)) --max-worker-port $((RAY_PORT + 109)) --disable-usage-stats
    wait_until "$START_TIMEOUT_S" ray-worker ray_worker_up
}

ray_worker_up() { session_alive ray-worker && grep -q "Ray runtime started" "$LOGS/ray-worker.log"; }

# --- the commands -------------------------------------------------------------------------------------------------

print_env() {
    cat <<EOF
# issuerisk on the local cluster in $STATE
export ISSUERISK__SPARK__MASTER=spark://$HOST:$SPARK_PORT
export ISSUERISK__SPARK__METASTORE_JDBC_URL=jdbc:postgresql://$HOST:$PG_PORT/$METASTORE_DB
export ISSUERISK__SPARK__METASTORE_USER=$METASTORE_USER
export ISSUERISK__SPARK__DRIVER_CLASS_PATH='[$JDBC_JAR]'
export ISSUERISK__SPARK__REMOTE=sc://$HOST:$CONNECT_PORT
export ISSUERISK__RAY__ADDRESS=$HOST:$RAY_PORT
export ISSUERISK_METASTORE_PASSWORD="\$(cat $PG_PASSWORD_FILE)"
export ISSUERISK_SPARK_AUTH_SECRET="\$(cat $SPARK_SECRET_FILE)"
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$RAY_TOKEN
EOF
}

component_up() {
    case $1 in
        postgres) postgres_up ;;
        spark-master) spark_master_up ;;
        spark-worker) spark_worker_up ;;
        ray-head) ray_head_up ;;
        ray-worker) ray_worker_up ;;
    esac
}

cmd_up() {
    local t0=$SECONDS component
    own_folder "$STATE"
    mkdir -p "$LOGS" "$PIDS"
    [ -f "$SPARK_SECRET_FILE" ] || (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$SPARK_SECRET_FILE")
    for component in "${COMPONENTS[@]}"; do
        if component_up "$component"; then
            say "$component: already up"
            [ "$component" != postgres ] || prepare_metastore || die "postgres: the metastore could not be prepared (log: $LOGS/postgres.log)"
            continue
        fi
        say "$component: starting"
        case $component in
            postgres) start_postgres && prepare_metastore ;;
            spark-master) start_spark_master ;;
            spark-worker) start_spark_worker ;;
            ray-head) start_ray_head ;;
            ray-worker) start_ray_worker ;;
        esac || die "$component failed to start (log: $LOGS/$component.log); the components before it still run: infra/local-cluster.sh down stops them"
    done
    say "up in $((SECONDS - t0)) s; Spark master UI http://$HOST:$SPARK_UI_PORT, logs in $LOGS"
    print_env
}

cmd_status() {
    local component failed=0
    for component in "${COMPONENTS[@]}"; do
        if component_up "$component"; then
            printf '%-13s up    %s\n' "$component" "$(status_detail "$component")"
        else
            printf '%-13s down  (log: %s)\n' "$component" "$LOGS/$component.log"
            failed=1
        fi
    done
    return $failed
}

status_detail() {
    case $1 in
        postgres) echo "jdbc:postgresql://$HOST:$PG_PORT/$METASTORE_DB (data $(pg_data))" ;;
        spark-master) echo "spark://$HOST:$SPARK_PORT, UI http://$HOST:$SPARK_UI_PORT" ;;
        spark-worker) echo "$SPARK_WORKER_CORES cores, $SPARK_WORKER_MEMORY, UI http://$HOST:$SPARK_WORKER_UI_PORT" ;;
        ray-head) echo "$HOST:$RAY_PORT, $RAY_HEAD_CPUS CPUs" ;;
        ray-worker) echo "$RAY_WORKER_CPUS CPUs" ;;
    esac
}

cmd_down() {
    local component failed=0 left
    [ -d "$STATE" ] && mkdir -p "$LOGS" "$PIDS"
    # Ray's GCS server ignores SIGTERM for a while; its state is not kept anyway
    stop_session ray-worker 5 || failed=1
    stop_session ray-head 5 || failed=1
    stop_session spark-worker 10 || failed=1
    stop_session spark-master 10 || failed=1
    stop_postgres || failed=1
    left=$(ss -ltnH 2>/dev/null | awk '{print $4}' | grep -E ":($SPARK_PORT|$SPARK_UI_PORT|6066|$SPARK_WORKER_PORT|$SPARK_WORKER_UI_PORT|$RAY_PORT|$RAY_CLIENT_PORT|$PG_PORT)\$" || true)
    if [ -n "$left" ]; then
        say "still listening after down: $(echo "$left" | tr '\n' ' ')(ss -ltnp names the process)"
        failed=1
    fi
    [ $failed = 0 ] && say "down: every component stopped"
    return $failed
}

cmd_purge() {  # down, then each folder removed only when it holds our marker; a failed down is reported, not a half purge
    local failed=0 dir
    cmd_down || failed=1
    for dir in "$(pg_data)" "$RAY_TMP" "$STATE"; do
        if [ -f "$dir/$MARKER" ]; then
            rm -rf "$dir"
        elif [ -e "$dir" ]; then
            say "left $dir in place: it holds no $MARKER, so this script did not make it"
            failed=1
        fi
    done
    [ $failed = 0 ] && say "purged $STATE"
    return $failed
}

case ${1:-} in
    up) cmd_up ;;
    env) print_env ;;
    status) cmd_status ;;
    down) cmd_down ;;
    purge) cmd_purge ;;
    *) echo "usage: $0 up|env|status|down|purge" >&2; exit 2 ;;
esac
