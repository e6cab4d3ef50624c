#!/usr/bin/env bash
# `make demo-cluster`: the demo's whole line with every Spark stage submitted to a
# standalone master + one 2-core worker on 127.0.0.1, started here and stopped at exit.
# Usage: scripts/demo_cluster.sh VENV_BIN OUT_DIR
set -euo pipefail
BIN=$1 OUT=$2
PORT=${SPARK_DEMO_PORT:-7077}
MASTER="spark://127.0.0.1:$PORT"
LOGS=$(mktemp -d)
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOG_DIR=$LOGS SPARK_WORKER_DIR=$LOGS/work
export PYSPARK_PYTHON=$BIN/python PYSPARK_DRIVER_PYTHON=$BIN/python

"$BIN/spark-class" org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$PORT" \
    --webui-port 0 >"$LOGS/master.log" 2>&1 &
MASTER_PID=$!
trap 'kill $WORKER_PID $MASTER_PID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
until grep -q "I have been elected leader" "$LOGS/master.log"; do sleep 1; done
"$BIN/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER" --host 127.0.0.1 \
    --cores 2 --memory 4g --webui-port 0 >"$LOGS/worker.log" 2>&1 &
WORKER_PID=$!
until grep -q "Successfully registered with master" "$LOGS/worker.log"; do sleep 1; done
echo "standalone cluster up: $MASTER (logs in $LOGS)"

sets=()
for stage in querylist curate download shards overlap; do
    sets+=(--set "$stage.master=$MASTER")
done
"$BIN/wit" demo --config configs/demo.yaml --out "$OUT" "${sets[@]}"
