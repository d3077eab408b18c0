#!/usr/bin/env bash
# The memory aims of issue #17 on one binary, in the embedded and in S3 mode (see
# bench/memory.py): idle RSS (an empty data dir, and BENCH_MEM_SEEDED's 100,000 repositories),
# peak RSS over idle during a large upload through the LFS basic transfer and through
# huggingface_hub + hf_xet, and under concurrent downloads mixing LFS and Xet files.
# A benchmark, not a test: it prints figures against the aims. Results: docs/benchmarks.md.
#
#   TROVE_BIN=/tmp/trove bench/memory.sh      # about 15 minutes with the defaults
#
# Env: TROVE_BIN             the binary (default: $CARGO_TARGET_DIR/release/trove)
#      BENCH_MEM_GIB (10)    size of the uploads watched (one stored copy on the disk at a time)
#      BENCH_MEM_MODES       local,s3
#      BENCH_MEM_PHASES      idle,lfs,xet,dl
#      BENCH_MEM_DL_MIB (512) size of the LFS file and of the Xet file downloaded
#      BENCH_MEM_LFS_CONNS (48) / BENCH_MEM_XET_PROCS (16)  downloads at once in each round
#      BENCH_ROUNDS (3)      download rounds, each BENCH_MEM_SECONDS (30) long at most
#      BENCH_MEM_SEEDED      a data dir seeded by `trove bench-seed-search` (bench/search/run.sh):
#                            its idle RSS is read on a copy of it (bench/idle_rss.sh)
#      BENCH_S3_MEMORY_MIB   [storage] s3_memory_mib of the S3-mode servers (default: the binary's)
#      BENCH_DIR (/var/tmp)  data dirs (on the disk under test); sources go to /dev/shm
#
# Servers bind 127.0.0.1 and are stopped by PID; every dir made here is removed on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TROVE_BIN="${TROVE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/trove}"
PY="$ROOT/.venv/bin/python"
S3S_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools/s3s-fs-0.14.1/bin/s3s-fs"
[[ -x "$TROVE_BIN" ]] || { echo "no trove binary at $TROVE_BIN" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "no .venv (run: bash scripts/test.sh --setup-only)" >&2; exit 1; }
[[ "${BENCH_MEM_MODES:-local,s3}" != *s3* || -x "$S3S_BIN" ]] ||
    { echo "no s3s-fs at $S3S_BIN (bench/s3.sh installs it)" >&2; exit 1; }
WORK="$(mktemp -d "${BENCH_DIR:-/var/tmp}/trove-mem.XXXXXX")"
SRC="$(mktemp -d /dev/shm/trove-mem.XXXXXX)"
trap 'rm -rf -- "$WORK" "$SRC"' EXIT

if [[ -n "${BENCH_MEM_SEEDED:-}" ]]; then
    echo "idle at 100,000 repositories (a copy of $BENCH_MEM_SEEDED):"
    echo "| binary | to /healthz | RSS then (anon) | 10 s | 60 s (anon) | peak | load |"
    cp -a "$BENCH_MEM_SEEDED" "$WORK/seeded"
    "$ROOT/bench/idle_rss.sh" "$TROVE_BIN" "$WORK/seeded"
    rm -rf -- "$WORK/seeded"
fi
"$PY" "$ROOT/bench/memory.py" --trove "$TROVE_BIN" --python "$PY" --s3s-fs "$S3S_BIN" \
    --modes "${BENCH_MEM_MODES:-local,s3}" --phases "${BENCH_MEM_PHASES:-idle,lfs,xet,dl}" \
    --gib "${BENCH_MEM_GIB:-10}" --dl-mib "${BENCH_MEM_DL_MIB:-512}" \
    --rounds "${BENCH_ROUNDS:-3}" --seconds "${BENCH_MEM_SECONDS:-30}" \
    --lfs-conns "${BENCH_MEM_LFS_CONNS:-48}" --xet-procs "${BENCH_MEM_XET_PROCS:-16}" \
    ${BENCH_S3_MEMORY_MIB:+--s3-memory-mib "$BENCH_S3_MEMORY_MIB"} \
    --work "$WORK" --src "$SRC"
