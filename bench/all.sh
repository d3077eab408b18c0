#!/usr/bin/env bash
# Every row of the performance issue (#17) in one run, each against its reference, with the
# machine's other load around each part. A benchmark, not a test: it prints figures.
#
#   bench/all.sh                  build once, then run the parts one after the other
#
# The parts, each its own script with interleaved Trove/reference pairs (≥ 4) and medians:
#   core    bench/core.sh   1 GiB and 10 MiB downloads (curl, wrk c=1/8/64) against nginx
#                           sending the same bytes from the same page cache, per-pair ratio
#                           min/median/max, server CPU-s/GiB against nginx's, the LFS upload
#                           rows, peak RSS per phase, other processes' CPU per round
#   git     bench/git.sh    clone, fetch, push against git http-backend behind nginx
#   xet     bench/xet.sh    upload_file / hf_hub_download through hf_xet and plain HTTP
#                           (the upload rows: the upload helper's measurement, unchanged)
#   search  bench/search/run.sh   listings at 100,000 repos, c=1 and c=16
#
# Env: BENCH_PARTS ("core git xet search")  which parts, in order
#      BENCH_ROUNDS (4)                      pairs per measure, passed to every part
#      TROVE_BIN                             measure this binary instead of building one
#      CARGO_TARGET_DIR                      as for cargo (default ./target)
#      and each part's own knobs (see each script).
#
# The combined report goes to bench/out/all-<time>.txt; load averages and the CPU that other
# processes used are printed before and after each part. Every part stops what it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PARTS="${BENCH_PARTS:-core git xet search}"
export BENCH_ROUNDS="${BENCH_ROUNDS:-4}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$ROOT/bench/out"
REPORT="$ROOT/bench/out/all-$(date -u +%Y%m%dT%H%M%SZ).txt"

if [[ -z "${TROVE_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release --locked -p trove)
    TROVE_BIN="$TARGET_DIR/release/trove"
fi
export TROVE_BIN

# Cores' worth of CPU the whole machine used over one second (all processes).
busy_cores() {
    local a b
    a=$(awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
    sleep 1
    b=$(awk 'NR == 1 { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }'
}

say() { printf '%s\n' "$*" | tee -a "$REPORT"; }

say "bench/all.sh at $(git -C "$ROOT" rev-parse --short HEAD) on $(nproc) CPUs, $(date -u +%FT%TZ); parts: $PARTS; rounds: $BENCH_ROUNDS"
for part in $PARTS; do
    case "$part" in
        core) cmd=(bash "$ROOT/bench/core.sh") ;;
        git) cmd=(bash "$ROOT/bench/git.sh") ;;
        xet) cmd=(bash "$ROOT/bench/xet.sh") ;;
        search) cmd=(env "TROVE_BIN=$TROVE_BIN" bash "$ROOT/bench/search/run.sh") ;;
        *) echo "unknown part $part" >&2; exit 2 ;;
    esac
    say ""
    say "=== $part: load average $(cut -d' ' -f1-3 /proc/loadavg), machine busy $(busy_cores) cores before"
    start=$(date +%s)
    if "${cmd[@]}" 2> >(tee -a "$REPORT.log" >&2) | tee -a "$REPORT"; then
        status=ok
    else
        status="FAILED (exit ${PIPESTATUS[0]})"
    fi
    say "=== $part: $status in $(( $(date +%s) - start )) s; load average $(cut -d' ' -f1-3 /proc/loadavg), machine busy $(busy_cores) cores after"
done
say ""
say "Report: $REPORT (stderr of the parts: $REPORT.log)"
