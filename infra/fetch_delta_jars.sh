#!/usr/bin/env bash
# Download the Delta Lake jars that match the pinned pyspark/delta-spark pair into a folder, for clusters
# without Maven access; then set `spark.jars_dir: <folder>` in the config.
#   infra/fetch_delta_jars.sh /opt/issuerisk/jars
set -euo pipefail
dest=${1:?usage: $0 DEST_DIR}
spark_mm=${SPARK_MM:-4.2}
delta=${DELTA_VERSION:-4.4.0}
repo=${MAVEN_REPO:-https://repo1.maven.org/maven2}
mkdir -p "$dest"
for artifact in "delta-spark_${spark_mm}_2.13" "delta-storage"; do
  jar="${artifact}-${delta}.jar"
  curl -fsSL -o "$dest/$jar" "$repo/io/delta/$artifact/$delta/$jar"
  echo "fetched $dest/$jar"
done
