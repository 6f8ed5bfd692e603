#!/usr/bin/env bash
# Execute throughput and latency of the reference workflow under wrk, executions persisted (to
# Postgres, or with STORE=sqlite to the embedded SQLite store), the model endpoint being the
# testkit's simulated student with instant replies.
#
#   bench/execute_load.sh            # wrk -t2 -c16 -d20s, as the LangGraph peer was measured
#   DURATION=60s CONNECTIONS=32 bench/execute_load.sh
#   ROUTING=1 bench/execute_load.sh  # under a 90/10 traffic policy, a routing key per request
#   STORE=sqlite bench/execute_load.sh  # the embedded single-node store instead of Postgres
#
# Needs: release binaries (cargo build --release -p sgde -p sgde-testkit), wrk, Postgres on
# 127.0.0.1:5432 (user postgres). Prints throughput, latency percentiles and peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/sgde-target}/release"
DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
DB="sgde_bench_$$"
PORT="${PORT:-28080}"
MODEL_PORT="${MODEL_PORT:-28911}"
export SGDE_BENCH_TOKEN="bench-token-0123456789abcdef"

STORE="${STORE:-postgres}"
SQLITE_DIR="/tmp/$DB"
if [ "$STORE" = sqlite ]; then
  DATABASE_URL="sqlite://$SQLITE_DIR/sgde.db"
  count_executions() { sqlite3 "$SQLITE_DIR/sgde.db" "SELECT count(*) FROM executions" 2>/dev/null || echo "?"; }
else
  psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  DATABASE_URL="$PG/$DB"
  count_executions() { psql "$PG/$DB" -tAc "SELECT count(*) FROM executions"; }
fi
cleanup() {
  kill "${SGDE_PID:-}" "${MODEL_PID:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$STORE" = sqlite ]; then rm -rf "$SQLITE_DIR"; else
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

"$TARGET/sgde-testkit" serve --port "$MODEL_PORT" --profile student >/tmp/sgde-bench-model.log 2>&1 &
MODEL_PID=$!
SGDE_DATABASE_URL="$DATABASE_URL" SGDE_ADMIN_TOKEN="$SGDE_BENCH_TOKEN" SGDE_LISTEN="127.0.0.1:$PORT" \
  RUST_LOG=warn "$TARGET/sgde" serve >/tmp/sgde-bench-server.log 2>&1 &
SGDE_PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

AUTH="Authorization: Bearer $SGDE_BENCH_TOKEN"
curl -sf -X POST "http://127.0.0.1:$PORT/v1/endpoints" -H "$AUTH" -H 'content-type: application/json' \
  -d "{\"name\":\"student\",\"base_url\":\"http://127.0.0.1:$MODEL_PORT/v1\",\"model\":\"student\",\"max_concurrency\":64,\"supports_n\":true}" >/dev/null
python3 -c "import json; print(json.dumps({'name': 'gsm', 'spec': json.load(open('examples/gsm_consensus.json'))}))" |
  curl -sf -X POST "http://127.0.0.1:$PORT/v1/workflows" -H "$AUTH" -H 'content-type: application/json' -d @- >/dev/null
if [ "${ROUTING:-0}" = 1 ]; then
  # A second version (same nodes, another description) and a 90/10 policy between the two.
  python3 -c "import json; s=json.load(open('examples/gsm_consensus.json')); s['description']+=' (B)'; print(json.dumps({'spec': s}))" |
    curl -sf -X POST "http://127.0.0.1:$PORT/v1/workflows/gsm/versions" -H "$AUTH" -H 'content-type: application/json' -d @- >/dev/null
  curl -sf -X PUT "http://127.0.0.1:$PORT/v1/workflows/gsm/policy" -H "$AUTH" -H 'content-type: application/json' \
    -d '{"variants":[{"version":"1","weight":90},{"version":"2","weight":10}]}' >/dev/null
  export SGDE_BENCH_ROUTING=1
fi
# One warm-up run, checked.
curl -sf -X POST "http://127.0.0.1:$PORT/v1/workflows/gsm/execute" -H "$AUTH" -H 'content-type: application/json' \
  -d '{"inputs":{"question":"A shop sells 41 apples per day for 8 days at $2642444 each. How many dollars does the shop make?"}}'
echo

peak_rss() { # kB of the sgde process and of its sandbox workers
  local main workers
  main=$(ps -o rss= -p "$SGDE_PID" | tr -d ' ')
  workers=$(ps -o rss= --ppid "$SGDE_PID" | awk '{s+=$1} END {print s+0}')
  echo "$main $workers"
}
MAX_MAIN=0; MAX_WORKERS=0
(
  while kill -0 "$SGDE_PID" 2>/dev/null; do peak_rss; sleep 0.5; done
) >/tmp/sgde-bench-rss.log &
SAMPLER=$!

wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/execute.lua \
  "http://127.0.0.1:$PORT/v1/workflows/gsm/execute"
kill "$SAMPLER" 2>/dev/null || true
read -r MAX_MAIN MAX_WORKERS < <(awk 'BEGIN{m=0;w=0} {if($1>m)m=$1; if($2>w)w=$2} END{print m, w}' /tmp/sgde-bench-rss.log)
echo "peak RSS: sgde $((MAX_MAIN / 1024)) MiB, sandbox workers $((MAX_WORKERS / 1024)) MiB"
kill "$SGDE_PID" 2>/dev/null && wait "$SGDE_PID" 2>/dev/null || true
echo "executions persisted ($STORE): $(count_executions)"
