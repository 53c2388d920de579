"""Typed configuration: validation names the bad key, environment overrides, no secrets."""

from __future__ import annotations

import pytest

from issuerisk.conf import ConfigError, load_config
from issuerisk.conf.settings import CONF_DIR


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_default_config_loads_and_resolves_the_warehouse(tmp_path):
    cfg = load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path / "wh")})
    assert cfg.project.warehouse == str(tmp_path / "wh")
    assert cfg.table_path("silver_issues") == f"{tmp_path}/wh/issuerisk.db/silver_issues"
    assert cfg.spark.master == "local[*]" and cfg.summarize.summarizer == "extractive"
    assert len(cfg.digest()) == 64


def test_cluster_example_is_valid():
    cfg = load_config(CONF_DIR / "cluster.example.yaml", environ={})
    assert cfg.project.warehouse.startswith("s3a://") and cfg.ray.address == "ray-head:6379"
    assert cfg.spark.metastore_jdbc_url.startswith("jdbc:postgresql://") and cfg.spark.remote.startswith("sc://")


def test_every_problem_is_named_at_once(tmp_path):
    path = write(
        tmp_path, "project:\n  warehouse: /tmp/x\n  sead: 3\ncluster:\n  n_neighbors: 1\n  metric_typo: cosine\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    text = str(err.value)
    assert "project.sead: unknown key" in text
    assert "cluster.metric_typo: unknown key" in text
    assert "cluster.n_neighbors" in text and "got 1" in text


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="--config PATH or set ISSUERISK_CONFIG"):
        load_config(tmp_path / "absent.yaml", environ={})


def test_environment_overrides(tmp_path):
    env = {
        "ISSUERISK_WAREHOUSE": "/data/wh",
        "ISSUERISK__CLUSTER__MIN_CLUSTER_SIZE": "40",
        "ISSUERISK__SUMMARIZE__LLM__MODEL": "llama3",
        "ISSUERISK_GITHUB_API_URL": "http://127.0.0.1:9/api/v3",
    }
    cfg = load_config(environ=env)
    assert cfg.project.warehouse == "/data/wh"
    assert cfg.cluster.min_cluster_size == 40
    assert cfg.summarize.llm.model == "llama3"
    assert cfg.github.api_url == "http://127.0.0.1:9/api/v3"


def test_secrets_are_refused_in_config(tmp_path):
    path = write(
        tmp_path, "project:\n  warehouse: /tmp/x\nspark:\n  extra:\n    spark.hadoop.fs.s3a.secret.key: abc123\n"
    )
    with pytest.raises(ConfigError, match="fs.s3a.secret.key.*environment") as err:
        load_config(path, environ={})
    assert "abc123" not in str(err.value)
    path = write(tmp_path, "project:\n  warehouse: /tmp/x\ngithub:\n  token: ghp_secret\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "github.token" in str(err.value)
    assert "ghp_secret" not in str(err.value)


def test_env_secrets_are_found_and_redacted():
    from issuerisk.conf.secrets import env_secrets, redact

    env = {
        "GITHUB_TOKENS": "ghp_SYNTHETIC01, ghp_SYNTHETIC0002",
        "OPENAI_API_KEY": "sk-SYNTHETIC3",
        "GITHUB_TOKEN": "short",
        "HOME": "/root/ghp",
    }
    secrets = env_secrets(env)
    assert set(secrets) == {
        "ghp_SYNTHETIC01, ghp_SYNTHETIC0002",
        "ghp_SYNTHETIC01",
        "ghp_SYNTHETIC0002",
        "sk-SYNTHETIC3",
    }
    assert (
        redact("401 for ghp_SYNTHETIC0002 and sk-SYNTHETIC3 (short stays)", secrets)
        == "401 for *** and *** (short stays)"
    )


def test_driver_java_options_join_the_metastore_options(tmp_path):
    from issuerisk.lakehouse.spark_session import builder_for

    cfg = load_config(
        environ={
            "ISSUERISK_WAREHOUSE": str(tmp_path / "wh"),
            "ISSUERISK__SPARK__DRIVER_JAVA_OPTIONS": "-XX:+UseSerialGC",
        }
    )
    options = builder_for(cfg)._options["spark.driver.extraJavaOptions"]
    assert options.startswith("-XX:+UseSerialGC ") and f"-Dderby.system.home={tmp_path / 'wh'}" in options
    path = write(
        tmp_path, "project:\n  warehouse: /tmp/x\nspark:\n  extra:\n    spark.driver.extraJavaOptions: -Xss4m\n"
    )
    with pytest.raises(
        ConfigError, match=r"spark.driver_java_options, not spark.extra\['spark.driver.extraJavaOptions'\]"
    ):
        load_config(path, environ={})


def test_a_warehouse_whose_metastore_another_process_holds_is_refused_before_spark_starts(tmp_path):
    import subprocess
    import sys

    from issuerisk.lakehouse.spark_session import SparkSetupError, ensure_metastore_free

    cfg = load_config(environ={"ISSUERISK_WAREHOUSE": str(tmp_path / "wh")})
    ensure_metastore_free(cfg)  # no metastore yet
    lock = tmp_path / "wh" / "metastore_db" / "dbex.lck"
    lock.parent.mkdir(parents=True)
    lock.write_text("left")  # by a killed process: a file, no lock
    ensure_metastore_free(cfg)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\nf = open(sys.argv[1], 'rb+')\nfcntl.lockf(f, "
            "fcntl.LOCK_EX)\nprint(flush=True)\ntime.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()  # now held, as Derby holds it while a process has the metastore open
        with pytest.raises(SparkSetupError, match=r"metastore_db\) is open in another process.*spark.metastore_uri"):
            ensure_metastore_free(cfg)
    finally:
        holder.kill()


@pytest.mark.parametrize("env", [{}, {"ISSUERISK_WAREHOUSE": "/tmp/wh"}, {"ISSUERISK__PROJECT__SEED": "3"}])
def test_a_section_that_is_not_a_mapping_is_named(tmp_path, env):
    path = write(tmp_path, "project: foo\nsummarize:\n  llm: [a]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    text = str(err.value)
    assert "  project: must be a mapping of keys" in text and "got a string" in text
    assert "  summarize.llm: must be a mapping of keys" in text and "got a list" in text


def test_an_override_below_a_single_value_is_named():
    with pytest.raises(
        ConfigError,
        match=r"ISSUERISK__SPARK__MASTER__X: spark.master is a single value, not a section, "
        r"so it has no key 'X'; set ISSUERISK__SPARK__MASTER itself",
    ):
        load_config(environ={"ISSUERISK__SPARK__MASTER__X": "1"})
    with pytest.raises(ConfigError, match=r"override spark.master.x: spark.master is a single value"):
        load_config(environ={}, overrides={"spark.master.x": 1})


def test_an_override_below_a_non_mapping_in_the_file_is_named(tmp_path):
    path = write(tmp_path, "project:\n  warehouse: /tmp/x\nspark:\n  extra: 3\n")
    with pytest.raises(ConfigError, match=r"  spark.extra: must be a mapping of keys .*got a number"):
        load_config(path, environ={"ISSUERISK__SPARK__EXTRA__spark.a": "1"})


@pytest.mark.parametrize("name", ["ISSUERISK__SPARK__", "ISSUERISK____MASTER", "ISSUERISK__SPARK__EXTRA__"])
def test_an_override_naming_an_empty_key_is_named(name):
    with pytest.raises(ConfigError, match=f"  {name}: names an empty key"):
        load_config(environ={name: "1"})


def test_an_empty_section_takes_overrides_and_defaults(tmp_path):
    path = write(tmp_path, "project:\n  warehouse: /tmp/x\nspark:\nray:\n")
    cfg = load_config(path, environ={"ISSUERISK__SPARK__MASTER": "local[1]"})
    assert cfg.spark.master == "local[1]" and cfg.spark.driver_memory == "4g" and cfg.ray.address is None


def test_spark_options_from_the_environment_keep_their_name_and_text():
    env = {
        "ISSUERISK__SPARK__EXTRA__spark.a.b": "v",
        "ISSUERISK__SPARK__EXTRA__spark.sql.ansi.enabled": "true",
        "ISSUERISK__SPARK__EXTRA__spark.sql.files.maxPartitionBytes": "64m",
        "ISSUERISK__SPARK__EXTRA__spark.x__y": "4",
    }
    cfg = load_config(environ=env)
    assert cfg.spark.extra == {
        "spark.a.b": "v",
        "spark.sql.ansi.enabled": "true",
        "spark.sql.files.maxPartitionBytes": "64m",
        "spark.x__y": "4",
    }
    assert load_config(environ={}, overrides={"spark.extra.spark.a.b": "v"}).spark.extra == {"spark.a.b": "v"}


def test_a_mapping_key_from_the_environment_joins_the_default_mapping():
    cfg = load_config(environ={"ISSUERISK__GITHUB__FRAMEWORK_QUERIES__keras": "[keras in:name, 'topic:keras3']"})
    assert cfg.github.framework_queries["keras"] == ["keras in:name", "topic:keras3"]
    assert cfg.github.framework_queries["pytorch"] == ["pytorch in:name,description,readme", "topic:pytorch"]


def test_string_keys_take_the_environment_value_verbatim():
    env = {
        "ISSUERISK__GITHUB__CREATED_FROM": "2016-01-01",
        "ISSUERISK__SUMMARIZE__LLM__PROMPT_VERSION": "2",
        "ISSUERISK__SPARK__DRIVER_JAVA_OPTIONS": "null",
        "ISSUERISK__EMBED__QUERY_PREFIX": "Query: ",
        "ISSUERISK__SPARK__SHUFFLE_PARTITIONS": "3",
        "ISSUERISK__CLUSTER__SEEDED": "false",
    }
    cfg = load_config(environ=env)
    assert (cfg.github.created_from, cfg.summarize.llm.prompt_version, cfg.spark.driver_java_options) == (
        "2016-01-01",
        "2",
        None,
    )
    assert (cfg.embed.query_prefix, cfg.spark.shuffle_partitions, cfg.cluster.seeded) == ("Query: ", 3, False)


@pytest.mark.parametrize(
    ("env", "key", "where"),
    [
        (
            {"ISSUERISK__SUMMARIZE__LLM__BASE_URL": "http://user:sk-SYNTHETIC-0001@127.0.0.1:8/v1"},
            "summarize.llm.base_url",
            "a user:password@ part",
        ),
        (
            {"ISSUERISK__SUMMARIZE__LLM__BASE_URL": "http://127.0.0.1:8/v1?key=sk-SYNTHETIC-0001"},
            "summarize.llm.base_url",
            "the query parameter 'key'",
        ),
        (
            {"ISSUERISK_GITHUB_API_URL": "https://ghp_SYNTHETIC0001@ghe.example/api/v3"},
            "github.api_url",
            "a user@ part",
        ),
        (
            {"ISSUERISK__GITHUB__API_URL": "https://ghe.example/api/v3?access_token=ghp_SYNTHETIC0001"},
            "github.api_url",
            "the query parameter 'access_token'",
        ),
        (
            {"ISSUERISK_WAREHOUSE": "s3a://AKIASYNTHETIC:SYNTHETICsecret@bucket/wh"},
            "project.warehouse",
            "a user:password@ part",
        ),
        ({"ISSUERISK__RAY__ADDRESS": "ray://admin:SYNTHETIC@head:10001"}, "ray.address", "a user:password@ part"),
    ],
)
def test_credentials_in_a_url_are_refused_by_key_without_the_value(env, key, where):
    with pytest.raises(ConfigError) as err:
        load_config(environ=env)
    text = str(err.value)
    assert f"  {key}: the URL carries credentials ({where}); " in text
    assert "SYNTHETIC" not in text
