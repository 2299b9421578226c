#!/usr/bin/env bash
# Submit a batchrec job to Spark: local by default, or any cluster spark-submit can reach.
#
#   ./spark-submit.sh JOB [job options]
#   e.g. ./spark-submit.sh train --recipe user-personalization --interactions data/interactions \
#            --solution models/up --run-date 2026-11-22
#
# Environment:
#   MASTER             Spark master (default local[*]); yarn, k8s://..., spark://...
#   SPARK_SUBMIT       the spark-submit binary (default: on PATH, else .venv/bin/spark-submit)
#   PYTHON             Python that has batchrec installed (default: .venv/bin/python, else python3)
#   SPARK_SUBMIT_ARGS  extra spark-submit arguments, e.g. "--deploy-mode cluster
#                      --archives env.tar.gz#env --conf spark.pyspark.python=./env/bin/python"
#   BATCHREC_ENV       configuration overlay conf/<env>.toml
#
# It execs spark-submit, so the job's exit code (0, 1 or 2) reaches Airflow unchanged.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: ./spark-submit.sh JOB [options]; jobs: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
fi
job="$1"; shift
entry="$here/jobs/$job.py"
[ -f "$entry" ] || { echo "spark-submit.sh: no job '$job' (expected $entry)" >&2; exit 2; }

PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(command -v spark-submit || echo "$here/.venv/bin/spark-submit")}"
MASTER="${MASTER:-local[*]}"

# Our code travels as a zip on --py-files; the conf files travel with --files.
mkdir -p "$here/build"
rm -f "$here/build/batchrec.zip"
(cd "$here/lib" && "$PYTHON" -m zipfile -c "$here/build/batchrec.zip" batchrec)
packages="$("$PYTHON" -c 'from batchrec.spark import delta_coordinates; print(",".join(delta_coordinates()))')"
conf_files="$(ls "$here"/conf/*.toml | tr '\n' ',' | sed 's/,$//')"

# PYSPARK_PYTHON makes local executors use the same interpreter (numpy, pyarrow) as the driver.
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"
export BATCHREC_CONF_DIR="${BATCHREC_CONF_DIR:-$here/conf}"
# shellcheck disable=SC2086
exec "$SPARK_SUBMIT" \
  --master "$MASTER" \
  --name "batchrec-$job" \
  --packages "$packages" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  --conf "spark.jars.ivy=${BATCHREC_CACHE_DIR:-$HOME/.cache/batchrec}/ivy" \
  --conf "spark.driver.extraJavaOptions=-Dlog4j.configurationFile=file:$here/lib/batchrec/log4j2.properties" \
  --py-files "$here/build/batchrec.zip" \
  --files "$conf_files" \
  ${SPARK_SUBMIT_ARGS:-} \
  "$entry" "$@"
