#!/usr/bin/env bash
# Submit a batchrec job to Spark: local by default, or any cluster spark-submit can reach.
#
#   ./spark-submit.sh [--pack-env] [--ship-jars] [--build-only] JOB [job options]
#   e.g. ./spark-submit.sh run examples/pipeline.toml --run-date 2026-11-22
#        ./spark-submit.sh train --recipe user-personalization --interactions data/interactions \
#            --solution models/up --run-date 2026-11-22
#
# Options (before JOB):
#   --pack-env    also build build/env.tar.gz with venv-pack: a virtual environment holding batchrec's
#                 Python dependencies (numpy, pyarrow, scipy, numba, pandas, boto3, click; no pyspark), shipped
#                 with --archives build/env.tar.gz#environment and spark.pyspark.python=
#                 ./environment/bin/python, for clusters whose executors lack them (BATCHREC_PACK_ENV=1)
#   --ship-jars   ship the Delta jars already resolved in the local cache (~/.cache/batchrec) with
#                 --jars instead of --packages, for clusters without Maven access (BATCHREC_SHIP_JARS=1)
#   --build-only  build build/batchrec.zip (and build/env.tar.gz with --pack-env), print their paths
#                 and submit nothing (for Airflow, EMR steps, Databricks: upload them yourself)
#
# Environment:
#   MASTER             Spark master (default local[*]); yarn, k8s://..., spark://...
#   DEPLOY_MODE        client (default) or cluster
#   SPARK_SUBMIT       the spark-submit binary (default: on PATH, else .venv/bin/spark-submit)
#   PYTHON             Python that has batchrec installed (default: .venv/bin/python, else python3)
#   SPARK_SUBMIT_ARGS  extra spark-submit arguments, e.g. "--conf spark.executor.memory=8g"
#   BATCHREC_ENV       configuration overlay conf/<env>.toml
#   BATCHREC_PACK_PYTHON_PREFIX  where Python lives on the cluster nodes (venv-pack --python-prefix,
#                      e.g. /usr); default: the same path as here
#
# `run PIPELINE.toml` ships the pipeline file with --files too; in cluster deploy mode the job reads
# it from the driver's working directory.
#
# It execs spark-submit, so the job's exit code (0, 1 or 2) reaches Airflow unchanged; a mistake in
# this script's own arguments exits 2 before anything is submitted.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

usage() {
  echo "usage: ./spark-submit.sh [--pack-env] [--ship-jars] [--build-only] JOB [options];" \
       "jobs: $(cd "$here/jobs" && ls *.py | sed 's/\.py$//' | tr '\n' ' ')" >&2
  exit 2
}

pack_env="${BATCHREC_PACK_ENV:-0}"
ship_jars="${BATCHREC_SHIP_JARS:-0}"
build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --pack-env) pack_env=1; shift ;;
    --ship-jars) ship_jars=1; shift ;;
    --build-only) build_only=1; shift ;;
    -h|--help) usage ;;
    -*) echo "spark-submit.sh: unknown option $1 (options go before JOB)" >&2; usage ;;
    *) break ;;
  esac
done
[ "$build_only" = 1 ] || [ $# -ge 1 ] || usage
job="${1:-}"; [ $# -gt 0 ] && shift
entry="$here/jobs/$job.py"
[ "$build_only" = 1 ] || [ -f "$entry" ] || { echo "spark-submit.sh: no job '$job' (expected $entry)" >&2; exit 2; }

PYTHON="${PYTHON:-$( [ -x "$here/.venv/bin/python" ] && echo "$here/.venv/bin/python" || echo python3 )}"
SPARK_SUBMIT="${SPARK_SUBMIT:-$(command -v spark-submit || echo "$here/.venv/bin/spark-submit")}"
MASTER="${MASTER:-local[*]}"
DEPLOY_MODE="${DEPLOY_MODE:-}"
case "$DEPLOY_MODE" in ""|client|cluster) ;; *) echo "spark-submit.sh: DEPLOY_MODE=$DEPLOY_MODE; expected client or cluster" >&2; exit 2 ;; esac
cluster_mode=0
if [ "$DEPLOY_MODE" = cluster ] || [[ " ${SPARK_SUBMIT_ARGS:-} " =~ --deploy-mode[=\ ]+cluster ]]; then cluster_mode=1; fi

# Our code travels as a zip on --py-files; the conf files travel with --files.
mkdir -p "$here/build"
rm -f "$here/build/batchrec.zip"
(cd "$here/lib" && "$PYTHON" -m zipfile -c "$here/build/batchrec.zip" batchrec)

# A packed virtual environment of batchrec's runtime dependencies, built once per set of
# requirements in the cache (~/.cache/batchrec/pack-env/<key>/) and linked as build/env.tar.gz.
build_env() {
  local cache="${BATCHREC_CACHE_DIR:-$HOME/.cache/batchrec}/pack-env" requirements key dir
  requirements="$("$PYTHON" - <<'EOF'
import importlib.metadata as m, re
reqs = [r for r in (m.requires("batchrec") or []) if "extra ==" not in r]
# The cluster brings Spark: pyspark and delta-spark stay out of the archive.
print("\n".join(r for r in reqs if re.split(r"[<>=!~ ;\[]", r, 1)[0].lower() not in ("pyspark", "delta-spark")))
print("venv-pack==0.2.0")
EOF
)"
  key="$(printf '%s\n%s\n%s' "$("$PYTHON" -c 'import sys; print(sys.version)')" "$requirements" \
         "${BATCHREC_PACK_PYTHON_PREFIX:-}" | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
  dir="$cache/$key"
  if [ ! -f "$dir/env.tar.gz" ]; then
    echo "spark-submit.sh: packing a virtual environment of $(echo "$requirements" | tr '\n' ' ')into $dir/env.tar.gz" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    printf '%s\n' "$requirements" > "$dir/requirements.txt"
    "$PYTHON" -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install -q -r "$dir/requirements.txt" >&2
    local prefix=()
    [ -n "${BATCHREC_PACK_PYTHON_PREFIX:-}" ] && prefix=(--python-prefix "$BATCHREC_PACK_PYTHON_PREFIX")
    "$dir/venv/bin/venv-pack" -q -p "$dir/venv" -o "$dir/partial.tar.gz" "${prefix[@]}" >&2
    mv "$dir/partial.tar.gz" "$dir/env.tar.gz"
  fi
  ln -sfn "$dir/env.tar.gz" "$here/build/env.tar.gz"
}
if [ "$pack_env" = 1 ]; then build_env; fi

if [ "$build_only" = 1 ]; then
  echo "$here/build/batchrec.zip"
  [ "$pack_env" = 1 ] && echo "$here/build/env.tar.gz"
  exit 0
fi

conf_files="$(ls "$here"/conf/*.toml | tr '\n' ',' | sed 's/,$//')"
args=("$@")
if [ "$job" = run ] && [ ${#args[@]} -gt 0 ] && [ -f "${args[0]}" ]; then
  # The pipeline file travels with the conf files; a cluster-mode driver finds it in its working dir.
  conf_files="$conf_files,$(cd "$(dirname "${args[0]}")" && pwd)/$(basename "${args[0]}")"
  [ "$cluster_mode" = 1 ] && args[0]="$(basename "${args[0]}")"
fi

submit=(--master "$MASTER" --name "batchrec-$job")
[ -n "$DEPLOY_MODE" ] && submit+=(--deploy-mode "$DEPLOY_MODE")
if [ "$ship_jars" = 1 ]; then
  jars="$("$PYTHON" -c 'from batchrec.spark import cached_delta_jars; print(",".join(cached_delta_jars()))')"
  if [ -z "$jars" ]; then
    echo "spark-submit.sh: --ship-jars: no Delta jars resolved in ${BATCHREC_CACHE_DIR:-$HOME/.cache/batchrec} yet;" \
         "run any batchrec command once where Maven Central is reachable (e.g. ./dev.sh demo)" >&2
    exit 2
  fi
  submit+=(--jars "$jars")
else
  submit+=(--packages "$("$PYTHON" -c 'from batchrec.spark import delta_coordinates; print(",".join(delta_coordinates()))')")
fi
if [ "$pack_env" = 1 ]; then
  submit+=(--archives "$here/build/env.tar.gz#environment" --conf spark.pyspark.python=./environment/bin/python)
  # A client-mode driver runs here, with the local interpreter; a cluster-mode driver unpacks the archive too.
  [ "$cluster_mode" = 1 ] || submit+=(--conf "spark.pyspark.driver.python=$PYTHON")
else
  # PYSPARK_PYTHON makes local executors use the same interpreter (numpy, pyarrow) as the driver.
  export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$PYTHON}"
fi
export BATCHREC_CONF_DIR="${BATCHREC_CONF_DIR:-$here/conf}"
# shellcheck disable=SC2086
exec "$SPARK_SUBMIT" \
  "${submit[@]}" \
  --conf spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension \
  --conf spark.sql.catalog.spark_catalog=org.apache.spark.sql.delta.catalog.DeltaCatalog \
  --conf spark.sql.session.timeZone=UTC \
  --conf "spark.jars.ivy=${BATCHREC_CACHE_DIR:-$HOME/.cache/batchrec}/ivy" \
  --conf "spark.driver.extraJavaOptions=-Dlog4j.configurationFile=file:$here/lib/batchrec/log4j2.properties" \
  --py-files "$here/build/batchrec.zip" \
  --files "$conf_files" \
  ${SPARK_SUBMIT_ARGS:-} \
  "$entry" "${args[@]}"
