#!/usr/bin/env bash
# The inference benchmark: embeddings/s and generated tokens/s of models the hub runs, for
# tiny models and realistically sized ones (a MiniLM-shaped encoder, a ~100M-parameter
# Llama-shaped decoder), each next to the same forward pass in onnxruntime and in numpy in
# the same run (the ratios are hub / onnxruntime and hub / numpy); then, for every row, the
# forward pass alone in process on both sides (trove-infer's code path as the hub runs it,
# from the files uploaded, next to onnxruntime on the same inputs and threads), so that the
# HTTP round trip does not hide the runtime. Results: docs/inference.md.
#
#   bench/inference.sh            build, start a hub on 127.0.0.1, measure (a few minutes)
#
# Env: CARGO_TARGET_DIR   as for cargo (default ./target)
#      TROVE_BIN          measure this trove binary instead of building one
#      TROVE_BENCH_ROWS   the rows to measure, comma-separated (default all): tiny-encoder,
#                         minilm-shaped, tiny-decoder, decoder-100m; or `gguf` alone: GGUF
#                         Llama, Qwen2 and Qwen3 models of the same shapes side by side
#      TROVE_BENCH_BATCH  sentences per request in the encoders' batched rows (default 32)
#      TROVE_BENCH_CLIENTS clients sending single sentences at once in the encoders'
#                         concurrent rows (default 8; onnxruntime's and numpy's figures there
#                         are their one-sentence-per-call rates)
#      TROVE_BENCH_EXAMPLES where trove-infer's examples embed_bench and gen_bench are built
#                         (default: built here with cargo, $CARGO_TARGET_DIR/release/examples);
#                         they time the forward pass alone in process, next to onnxruntime
#      TROVE_BENCH_THREADS threads of each side in those in-process rows (default 1: the hub
#                         runs a request on one inference thread)
#      TROVE_BENCH_ONNX   where onnxruntime and onnx (bench/requirements-onnx.txt, pinned) are
#                         installed with pip --target, apart from the test venv
#                         (default /var/tmp/trove-bench-onnx; installed once)
#
# The one server it starts binds to 127.0.0.1 and is stopped by PID on any exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d /var/tmp/trove-infer-bench.XXXXXX)"
PID=""
cleanup() {
    if [[ -n "$PID" ]] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID"
        wait "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

ONNX_DIR="${TROVE_BENCH_ONNX:-/var/tmp/trove-bench-onnx}"
if [[ ! -f "$ONNX_DIR/.installed" ]]; then
    # numpy, packaging and typing_extensions come from the venv (same pins).
    "$PY" -m pip install --quiet --no-deps --target "$ONNX_DIR" -r "$ROOT/bench/requirements-onnx.txt" >&2
    touch "$ONNX_DIR/.installed"
fi

if [[ -z "${TROVE_BENCH_EXAMPLES:-}" ]]; then
    cargo build --release -p trove-infer --example embed_bench --example gen_bench --manifest-path "$ROOT/Cargo.toml" >&2
    TROVE_BENCH_EXAMPLES="$TARGET_DIR/release/examples"
fi
export TROVE_BENCH_EXAMPLES

if [[ -z "${TROVE_BIN:-}" ]]; then
    cargo build --release -p trove --manifest-path "$ROOT/Cargo.toml" >&2
    TROVE_BIN="$TARGET_DIR/release/trove"
fi

"$TROVE_BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 >"$WORK/server.log" 2>&1 &
PID=$!
URL=""
for _ in $(seq 1 300); do
    URL="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$WORK/server.log" | head -1 || true)"
    [[ -n "$URL" && -s "$WORK/data/admin-token" ]] && break
    sleep 0.1
done
[[ -n "$URL" ]] || { cat "$WORK/server.log" >&2; echo "the hub did not start" >&2; exit 1; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
TROVE_BENCH_SERVER_PID="$PID" PYTHONPATH="$ONNX_DIR" HF_HUB_DISABLE_XET=1 HF_HUB_DISABLE_TELEMETRY=1 "$PY" "$ROOT/bench/inference_bench.py" \
    "$URL" "$(cat "$WORK/data/admin-token")" "$WORK"
