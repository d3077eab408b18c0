#!/usr/bin/env bash
# Listing and search benchmark (issue #6). Not a test: it measures, it does not assert.
#
#   bench/search/run.sh            seed 100,000 repositories (once), serve them on 127.0.0.1,
#                                  measure each scenario with wrk at concurrency 1 and 16,
#                                  report p50/p99, requests/s, server memory and SQLite size
#
# Env: TROVE_BIN (default target/release/trove), REPOS (100000), DURATION (10s per run),
#      BENCH_DIR (/tmp/trove-bench-search; the seeded data dir is kept there and reused),
#      PORT (18091), ONLY (an extended regex: run only the scenarios whose name matches).
#
# Besides latency and throughput, each run reports the server's CPU time per request
# (user + system from /proc/PID/stat over the run, divided by the requests wrk completed):
# on a shared machine it moves much less with the other load than p99 does.
#
# Seeding goes through `trove bench-seed-search`: synthetic but realistic cards, parsed by
# the real card parser, written to the same index columns reindex writes, in batches of 2000
# per transaction. No git repositories are created, so only listing and search are measured.
# Everything stays on 127.0.0.1; every wrk run is bounded by DURATION; the server is stopped
# by its PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${TROVE_BIN:-$ROOT/target/release/trove}"
REPOS="${REPOS:-100000}"
DURATION="${DURATION:-10s}"
BENCH_DIR="${BENCH_DIR:-/tmp/trove-bench-search}"
PORT="${PORT:-18091}"
DATA="$BENCH_DIR/data-$REPOS"
URL="http://127.0.0.1:$PORT"
# shellcheck source=seeded.sh
source "$ROOT/bench/search/seeded.sh"

if pgrep -f 'bench/core|bench/git' >/dev/null; then
    echo "another benchmark is running (bench/core or bench/git); try again later" >&2
    exit 1
fi
[[ -x "$BIN" ]] || { echo "no trove binary at $BIN (cargo build --release, or set TROVE_BIN)" >&2; exit 1; }
if ! command -v wrk >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

seed_once

SERVER_PID=""
stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT

TROVE_LOG=warn "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$BENCH_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 120); do
    curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
    sleep 0.5
done
curl -fsS "$URL/healthz" >/dev/null

USER_TOKEN=$("$BIN" token create --user seed --role read --data-dir "$DATA")
TOP_AUTHOR=$(python3 - "$DATA/trove.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
print(db.execute("SELECT namespace FROM repos WHERE repo_type = 'model' "
                 "GROUP BY namespace ORDER BY count(*) DESC LIMIT 1").fetchone()[0])
PY
)

# name | path | auth (1 = as a signed-in user, whose private repos are included)
SCENARIOS=(
    "filtered+sorted first page|/api/models?filter=transformers&filter=en&filter=license:mit&pipeline_tag=text-classification&sort=downloads&limit=20|0"
    "same, signed in|/api/models?filter=transformers&filter=en&filter=license:mit&pipeline_tag=text-classification&sort=downloads&limit=20|1"
    "default listing (trending)|/api/models?limit=20|0"
    "two rare tags, by likes|/api/models?filter=medical&filter=ja&sort=likes&limit=20|0"
    "author, by last modified|/api/models?author=$TOP_AUTHOR&sort=lastModified&limit=20|0"
    "datasets facets|/api/datasets?filter=task_categories:text-classification&filter=license:mit&sort=downloads&limit=20|0"
    "spaces by likes|/api/spaces?sort=likes&limit=20|0"
    "full-text search (common)|/api/models?search=llama&sort=downloads&limit=20|0"
    "full-text search (rare)|/api/models?search=qwen-legal-fin&limit=20|0"
    "full-text + filter|/api/models?search=bert&filter=license:mit&sort=likes&limit=20|0"
    "cardData page|/api/models?filter=transformers&cardData=true&sort=downloads&limit=20|0"
)

# The server's user + system CPU time so far, in clock ticks.
server_ticks() {
    awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"
}
TICK=$(getconf CLK_TCK)

printf '\n| scenario | c | p50 | p99 | req/s | CPU µs/req |\n|---|---|---|---|---|---|\n'
for scenario in "${SCENARIOS[@]}"; do
    IFS='|' read -r name path auth <<<"$scenario"
    [[ -n "${ONLY:-}" && ! "$name" =~ $ONLY ]] && continue
    headers=()
    [[ "$auth" == 1 ]] && headers=(-H "Authorization: Bearer $USER_TOKEN")
    curl -fsS "${headers[@]}" "$URL$path" >/dev/null   # warm up, and fail loudly on an error
    for c in 1 16; do
        threads=$(( c < 2 ? 1 : 2 ))
        ticks_before=$(server_ticks)
        out=$(wrk -t"$threads" -c"$c" -d"$DURATION" --latency "${headers[@]}" "$URL$path")
        ticks=$(( $(server_ticks) - ticks_before ))
        requests=$(awk '/requests in/ {print $1}' <<<"$out")
        cpu=$(awk -v t="$ticks" -v hz="$TICK" -v n="$requests" 'BEGIN {printf "%.0f", (n > 0 ? t / hz * 1e6 / n : 0)}')
        p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
        p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
        errors=$(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)
        printf '| %s | %s | %s | %s | %s | %s |%s\n' "$name" "$c" "$p50" "$p99" "$rps" "$cpu" "${errors:+ $errors}"
    done
done

rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$SERVER_PID/status")
hwm=$(awk '/VmHWM/ {print $2 " " $3}' "/proc/$SERVER_PID/status")
db_size=$(du -cb "$DATA"/trove.db* | awk 'END {print $1}')
printf '\nrepositories: %s\nserver memory: RSS %s (peak %s)\nSQLite size: %s bytes (%s MiB, with WAL)\n' \
    "$REPOS" "$rss" "$hwm" "$db_size" "$(( db_size / 1048576 ))"
echo "binary: $(describe_binary "$BIN"), nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg)"
