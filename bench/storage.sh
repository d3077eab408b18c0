#!/usr/bin/env bash
# The storage acceptance benchmark of issue #13 (../shared/xet.md §5.7): versioned fp16/bf16
# safetensors checkpoints and a growing Parquet file uploaded through the real huggingface_hub
# client (warm and cold client cache, LFS then Xet, Xet then LFS); stored bytes against
# logical and ideal bytes from `trove storage stats --json`; the server's LFS ingest rate
# against the raw gear chunker + BLAKE3 rate. See bench/storage_bench.py. Results:
# docs/storage.md ("Figures").
#
#   bench/storage.sh              build what is missing, measure (about 5 minutes on 2 cores)
#
# Env: BENCH_DIR (/var/tmp)       work dir (needs ~1.5 GiB); removed at the end
#      BENCH_LAYERS (4)           layers per checkpoint (4 gives 32 MiB per checkpoint)
#      BENCH_INGEST_MIB (256)     size of each LFS upload timed for the ingest rate (random, fp16)
#      BENCH_ONLY_INGEST          set (to anything) to measure the ingest rate only (about 1 minute)
#      CARGO_TARGET_DIR           as for cargo (default ./target)
#      TROVE_BIN                  measure this trove binary instead of building one
#
# Servers bind 127.0.0.1 only and are stopped by PID; every loop is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\n==> %s\n' "$*" >&2; }

if [[ ! -x "$ROOT/.venv/bin/python" ]]; then
    log "the Python client (scripts/test.sh --setup-only)"
    "$ROOT/scripts/test.sh" --setup-only >/dev/null
fi

TROVE="${TROVE_BIN:-}"
if [[ -z "$TROVE" ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --locked --quiet)
    TROVE="$TARGET_DIR/release/trove"
fi

log "the raw chunker + BLAKE3 rate probe and the per-stage profile (trove-xet examples chunk_rate, ingest_stages)"
(cd "$ROOT" && cargo build --release --locked --quiet -p trove-xet --example chunk_rate --example ingest_stages)

exec "$ROOT/.venv/bin/python" "$ROOT/bench/storage_bench.py" \
    --trove "$TROVE" \
    --chunk-rate "$TARGET_DIR/release/examples/chunk_rate" \
    --ingest-stages "$TARGET_DIR/release/examples/ingest_stages" \
    --python "$ROOT/.venv/bin/python" \
    --bench-dir "${BENCH_DIR:-/var/tmp}" \
    --layers "${BENCH_LAYERS:-4}" \
    --ingest-mib "${BENCH_INGEST_MIB:-256}" \
    --json "$TARGET_DIR/bench-storage.json" \
    ${BENCH_ONLY_INGEST:+--only-ingest}
