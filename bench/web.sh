#!/usr/bin/env bash
# The web UI page benchmark: a repo of 10,000 files (10 folders × 10 subfolders × 100
# files, pushed over 5 commits) on a release server; its repository page, a tree page and a
# blob page measured with warm caches (p50/p99 over many requests on one keep-alive
# connection), side by side with the same server's /api/models/{repo} JSON. The aim: each
# page under 20 ms. A benchmark, not a test: it prints figures and fails only when
# something does not run. Results: docs/performance.md.
#
#   bench/web.sh                   build (release) and measure (about 2 minutes after the build)
#
# Env: BENCH_REQUESTS (300)        measured requests per page
#      BENCH_DIR (/var/tmp)        where the temp dir goes
#      CARGO_TARGET_DIR            as for cargo (default ./target)
#      TROVE_BIN                   measure this trove binary instead of building one
#
# The server binds 127.0.0.1 only, is stopped by PID, and the temp dir is removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS="${BENCH_REQUESTS:-300}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

WORK=""
TROVE_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$TROVE_PID" ]] && kill -0 "$TROVE_PID" 2>/dev/null; then
        kill -TERM "$TROVE_PID" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$TROVE_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$TROVE_PID" 2>/dev/null || true
        wait "$TROVE_PID" 2>/dev/null || true
    fi
    [[ -n "$WORK" && -d "$WORK" ]] && rm -rf -- "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

trove_bin="${TROVE_BIN:-}"
if [[ -z "$trove_bin" ]]; then
    (cd "$ROOT" && cargo build --release --locked -p trove)
    trove_bin="$TARGET_DIR/release/trove"
fi
[[ -x "$trove_bin" ]] || die "no binary at $trove_bin"
command -v git >/dev/null || die "git is needed"

mkdir -p "$BENCH_DIR"
WORK="$(mktemp -d "$BENCH_DIR/trove-web-bench.XXXXXX")"
# The access log would time every request twice over; the bench measures pages, not logging.
TROVE_LOG=warn "$trove_bin" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 \
    >"$WORK/trove.out" 2>"$WORK/trove.err" &
TROVE_PID=$!
url=""
for _ in $(seq 1 600); do
    url="$(grep -Eo 'http://127\.0\.0\.1:[0-9]+' "$WORK/trove.out" 2>/dev/null | head -n1 || true)"
    [[ -n "$url" ]] && break
    kill -0 "$TROVE_PID" 2>/dev/null || { cat "$WORK/trove.err" >&2; die "trove did not start"; }
    sleep 0.1
done
[[ -n "$url" ]] || die "trove did not print its URL"
for _ in $(seq 1 300); do
    [[ -s "$WORK/data/admin-token" ]] && break
    sleep 0.1
done
echo "trove pid $TROVE_PID at $url" >&2

python3 "$ROOT/bench/web_bench.py" --url "$url" --token-file "$WORK/data/admin-token" \
    --scratch "$WORK" --requests "$REQUESTS" \
    --json "$ROOT/bench/out/web-$(date -u +%Y%m%dT%H%M%SZ).json"
