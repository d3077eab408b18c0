#!/usr/bin/env bash
# Cold-start benchmark (issue #17). Not a test: it measures, it does not assert.
#
#   bench/coldstart.sh      seed 100,000 repositories (once, as bench/search/run.sh does),
#                           then start `trove serve` on them again and again and report
#                           the time from spawn to the first 200 of /healthz, the RSS then,
#                           the time until the repositories are checked ("repositories
#                           checked" in the log) and the peak RSS until then — after a
#                           clean stop (SIGTERM) and after a kill -9
#
#                           — and the time to the first 200 of /readyz
#
# Env: TROVE_BIN (default target/release/trove), BASE_BIN (a reference binary, e.g. main's,
#      measured in the same run, interleaved), REPOS (100000), ROUNDS (2),
#      BENCH_DIR (/tmp/trove-bench-coldstart; the seeded data dir is kept and reused),
#      PORT (18093),
#      TROVE_BENCH_POSTGRES_URL (a role allowed to create databases): the hub on PostgreSQL
#      instead of SQLite, in a database trove_coldstart_<REPOS> made and seeded once (and
#      a data dir of its own); one node.
#
# Each repository folder is a symlink to one shared repository (`trove bench-seed-search`),
# so the figures are for the per-repository work of a start, not for the size of any one
# repository. Everything stays on 127.0.0.1; servers are stopped by their PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TROVE_BIN:-$ROOT/target/release/trove}"
BASE_BIN="${BASE_BIN:-}"
REPOS="${REPOS:-100000}"
ROUNDS="${ROUNDS:-2}"
BENCH_DIR="${BENCH_DIR:-/tmp/trove-bench-coldstart}"
PORT="${PORT:-18093}"
DATA="$BENCH_DIR/data-$REPOS"
URL="http://127.0.0.1:$PORT"
PG_URL="${TROVE_BENCH_POSTGRES_URL:-}"
if [[ -n "$PG_URL" ]]; then
    command -v psql >/dev/null || { echo "psql not found (PATH=/usr/lib/postgresql/15/bin:\$PATH)" >&2; exit 1; }
    DATA="$BENCH_DIR/data-pg-$REPOS"
    PG_DB="trove_coldstart_$REPOS"
    if [[ ! -f "$DATA/.seeded" ]]; then
        psql -X -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
        psql -X -q "$PG_URL" -c "CREATE DATABASE $PG_DB" >/dev/null
    fi
    # Seed and serve on it (the variable every trove command reads).
    export TROVE_DATABASE="${PG_URL%/*}/$PG_DB"
fi
# shellcheck source=search/seeded.sh
source "$ROOT/bench/search/seeded.sh"

[[ -x "$BIN" ]] || { echo "no trove binary at $BIN (cargo build --release, or set TROVE_BIN)" >&2; exit 1; }
seed_once

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
kib() { awk -v k="$1" '/^'"$1"':/ {print int($2 / 1024)}' "/proc/$SERVER_PID/status"; }

# start BIN: serves DATA, waits for /healthz and /readyz; sets HEALTHZ_MS, RSS_MIB, READYZ_MS,
# CHECKED_MS, PEAK_MIB
start() {
    local bin=$1 log="$BENCH_DIR/server.log" t0 deadline
    t0=$(now_ms)
    TROVE_LOG=info "$bin" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$log" 2>&1 &
    SERVER_PID=$!
    deadline=$(( t0 + 120000 ))
    until curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null; do
        (( $(now_ms) < deadline )) || { echo "no /healthz after 120 s" >&2; tail -n 5 "$log" >&2; exit 1; }
        sleep 0.01
    done
    HEALTHZ_MS=$(( $(now_ms) - t0 ))
    RSS_MIB=$(kib VmRSS)
    until curl -fsS -o /dev/null "$URL/readyz" 2>/dev/null; do
        (( $(now_ms) < deadline )) || { echo "no ready /readyz after 120 s" >&2; tail -n 5 "$log" >&2; exit 1; }
        sleep 0.01
    done
    READYZ_MS=$(( $(now_ms) - t0 ))
    until grep -q "repositories checked\|repositories not checked\|repository check abandoned" "$log"; do
        (( $(now_ms) < deadline )) || { echo "repositories not checked after 120 s" >&2; exit 1; }
        sleep 0.05
    done
    CHECKED_MS=$(( $(now_ms) - t0 ))
    PEAK_MIB=$(kib VmHWM)
}

measure() {
    local label=$1 bin=$2 how=$3
    # The start before the measured one: stopped cleanly, or killed.
    start "$bin"
    if [[ "$how" == crash ]]; then
        kill -KILL "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
    else
        stop_server
    fi
    start "$bin"
    printf '| %s | %s | %d | %d | %d | %d | %d | %s |\n' "$label" "$how" "$HEALTHZ_MS" "$RSS_MIB" \
        "$READYZ_MS" "$CHECKED_MS" "$PEAK_MIB" "$(cut -d' ' -f1-3 /proc/loadavg)"
    stop_server
}

printf '\n| binary | after | to /healthz ms | RSS then MiB | to /readyz ms | to checked ms | peak RSS MiB | load |\n'
printf '|---|---|---|---|---|---|---|---|\n'
for _ in $(seq 1 "$ROUNDS"); do
    for how in clean crash; do
        [[ -n "$BASE_BIN" ]] && measure base "$BASE_BIN" "$how"
        measure new "$BIN" "$how"
    done
done
echo
echo "repositories: $REPOS on $([[ -n "$PG_URL" ]] && echo PostgreSQL || echo SQLite); binary: $(describe_binary "$BIN")${BASE_BIN:+; base: $(describe_binary "$BASE_BIN")}; nproc $(nproc)"
