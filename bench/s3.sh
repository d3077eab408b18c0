#!/usr/bin/env bash
# The S3 backend's benchmark: upload and download throughput of one large object through
# Trove in S3 mode (streaming, and presigned redirects of the Xet fetches) against the S3
# server directly — same object, same machine, same HTTP client, in one run. A benchmark, not
# a test: it prints figures and ratios, and the CPU seconds per GiB uploaded that Trove and
# the S3 server spend (on a shared machine the steadier figure: the three programs share the
# cores, so Trove's CPU per byte is what bounds its rate). Results: docs/storage.md ("S3 backend").
#
#   bench/s3.sh             # about 8 minutes with the defaults on 2 busy cores
#
# Env: BENCH_S3_MIB (512)      object size
#      BENCH_ROUNDS (3)        rounds; medians are reported
#      BENCH_DIR (/var/tmp)    where the temp dir goes (on the disk under test, not tmpfs)
#      BENCH_S3_UPLOAD_ONLY    1: the direct PUT and the Trove upload only (no downloads)
#      BENCH_S3_PUT_CONNECTION (shared) the upload's PUT on the batch request's connection,
#                              or fresh: on a new one (see s3_bench.py --put-connection)
#      BENCH_S3_CONCURRENCY (4) fetches in flight in the concurrent redirect row
#      BENCH_S3_PAIRS (4)      alternated direct GET / redirect pairs per round (0: none)
#      BENCH_S3_CLIENT (1)     0: skip the real client's row (hf_hub_download through hf_xet)
#      BENCH_S3_MEMORY_MIB     Trove's [storage] s3_memory_mib (unset: its default)
#      BENCH_S3_SERVER (s3s-fs) the S3 server: s3s-fs, or garage (a single-node Garage
#                              cluster, block compression off; built once from crates.io
#                              into ~/.cache/trove-tools, which takes a while the first time)
#      TROVE_BIN               the trove binary (default: $CARGO_TARGET_DIR/release/trove)
#
# s3s-fs is the server scripts/test.sh builds (cached in ~/.cache/trove-tools). It serves a
# GET by reading 4 KiB at a time through tokio's blocking pool, so its CPU per GiB swings
# 2-3x between runs on a busy machine; Garage (which stores objects as 1 MiB blocks and
# serves them from its own block manager) is the steadier reference for the ratios.
# Both servers bind 127.0.0.1 only and are stopped by PID on exit; the temp dir is removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools"
S3S_VERSION="0.14.1"
S3S_BIN="$CACHE_ROOT/s3s-fs-$S3S_VERSION/bin/s3s-fs"
GARAGE_VERSION="2.5.0"
GARAGE_BIN="$CACHE_ROOT/garage-$GARAGE_VERSION/bin/garage"
S3_SERVER="${BENCH_S3_SERVER:-s3s-fs}"
MIB="${BENCH_S3_MIB:-512}"
ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
TROVE_BIN="${TROVE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/trove}"
PY="$ROOT/.venv/bin/python"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[[ -x "$TROVE_BIN" ]] || die "no trove binary at $TROVE_BIN (cargo build --release -p trove, or set TROVE_BIN)"
[[ -x "$PY" ]] || die "no .venv (run: bash scripts/test.sh --setup-only)"
case "$S3_SERVER" in
s3s-fs)
    if [[ ! -x "$S3S_BIN" ]]; then
        cargo install s3s-fs --locked --version "$S3S_VERSION" --features binary \
            --root "$CACHE_ROOT/s3s-fs-$S3S_VERSION" --target-dir "$CACHE_ROOT/s3s-fs-build"
    fi
    ;;
garage)
    if [[ ! -x "$GARAGE_BIN" ]]; then
        # The embedded SQLite metadata engine only: no LMDB, no K2V, no metrics exporter.
        cargo install garage --locked --version "$GARAGE_VERSION" --no-default-features \
            --features bundled-libs,sqlite --root "$CACHE_ROOT/garage-$GARAGE_VERSION" \
            --target-dir "$CACHE_ROOT/garage-build"
        rm -rf -- "$CACHE_ROOT/garage-build"
    fi
    ;;
*) die "BENCH_S3_SERVER must be s3s-fs or garage, not $S3_SERVER" ;;
esac

WORK="$(mktemp -d "$BENCH_DIR/trove-s3-bench.XXXXXX")"
S3_PID=""
TROVE_PID=""
cleanup() {
    for pid in "$TROVE_PID" "$S3_PID"; do
        if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    done
    rm -rf -- "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # wait_port PORT PID
    local i
    for ((i = 0; i < 300; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

S3_PORT="$(free_port)"
if [[ "$S3_SERVER" == s3s-fs ]]; then
    mkdir -p "$WORK/s3/bench"
    export AWS_ACCESS_KEY_ID="bench-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    "$S3S_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3" >"$WORK/s3.log" 2>&1 &
    S3_PID=$!
    wait_port "$S3_PORT" "$S3_PID" || die "s3s-fs did not start: $(tail -5 "$WORK/s3.log")"
    S3_LABEL="s3s-fs $S3S_VERSION"
else
    # A single-node Garage: SQLite metadata, one zone, blocks stored uncompressed (as
    # s3s-fs stores files; random bytes would not compress anyway), RPC on loopback.
    RPC_PORT="$(free_port)"
    mkdir -p "$WORK/garage/meta" "$WORK/garage/data"
    cat >"$WORK/garage/garage.toml" <<TOML
metadata_dir = "$WORK/garage/meta"
data_dir = "$WORK/garage/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3_PORT"
TOML
    chmod 600 "$WORK/garage/garage.toml"
    garage() { "$GARAGE_BIN" -c "$WORK/garage/garage.toml" "$@"; }
    "$GARAGE_BIN" -c "$WORK/garage/garage.toml" server >"$WORK/s3.log" 2>&1 &
    S3_PID=$!
    wait_port "$S3_PORT" "$S3_PID" || die "garage did not start: $(tail -5 "$WORK/s3.log")"
    node="$(garage node id -q 2>/dev/null | cut -d@ -f1)"
    [[ -n "$node" ]] || die "garage: no node id: $(tail -5 "$WORK/s3.log")"
    garage layout assign -z bench -c 100G "$node" >/dev/null
    garage layout apply --version 1 >/dev/null
    export AWS_ACCESS_KEY_ID="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export AWS_SECRET_ACCESS_KEY="$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    garage key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
    garage bucket create bench >/dev/null
    garage bucket allow --read --write --owner bench --key bench >/dev/null
    S3_LABEL="garage $GARAGE_VERSION"
fi
ENDPOINT="http://127.0.0.1:$S3_PORT"

# One Trove in S3 mode with redirect_downloads on: /resolve streams (the file is rebuilt from
# its xorbs), the Xet reconstruction hands out presigned URLs.
mkdir -p "$WORK/trove"
printf '[storage]\nredirect_downloads = true\n' >"$WORK/trove/trove.toml"
if [[ -n "${BENCH_S3_MEMORY_MIB:-}" ]]; then
    printf 's3_memory_mib = %s\n' "$BENCH_S3_MEMORY_MIB" >>"$WORK/trove/trove.toml"
fi
TROVE_PORT="$(free_port)"
TROVE_STORAGE="s3://bench/trove?endpoint=$ENDPOINT&region=us-east-1" \
    "$TROVE_BIN" serve --data-dir "$WORK/trove" --listen "127.0.0.1:$TROVE_PORT" >"$WORK/trove.log" 2>&1 &
TROVE_PID=$!
wait_port "$TROVE_PORT" "$TROVE_PID" || die "trove did not start: $(tail -20 "$WORK/trove.log")"

echo "bench/s3.sh: $MIB MiB object, $ROUNDS rounds; $S3_LABEL on :$S3_PORT, trove on :$TROVE_PORT"
HF_ENDPOINT="http://127.0.0.1:$TROVE_PORT" HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_CACHE="$WORK/hf-cache" \
    HF_XET_CACHE="$WORK/xet-cache" HF_XET_CHUNK_CACHE_SIZE_BYTES=0 \
    "$PY" "$ROOT/bench/s3_bench.py" --s3-endpoint "$ENDPOINT" --bucket bench \
    --trove "http://127.0.0.1:$TROVE_PORT" --token "$(cat "$WORK/trove/admin-token")" \
    --file "$WORK/object.bin" --size-mib "$MIB" --rounds "$ROUNDS" \
    --trove-pid "$TROVE_PID" --s3-pid "$S3_PID" --s3-name "${S3_LABEL%% *}" \
    --fetch-concurrency "${BENCH_S3_CONCURRENCY:-4}" --pairs "${BENCH_S3_PAIRS:-4}" \
    $([[ "${BENCH_S3_CLIENT:-1}" == 1 ]] && echo --real-client) \
    $([[ "${BENCH_S3_UPLOAD_ONLY:-0}" == 1 ]] && echo --upload-only) \
    --put-connection "${BENCH_S3_PUT_CONNECTION:-shared}"

# Where each Trove upload's time went on the server (receive + SHA-256, the packing stage's
# CPU, waiting for xorbs on their way to the bucket, records): the `storage.lfs_ingested` lines.
echo
echo "server stages of the uploads (storage.lfs_ingested):"
grep 'storage.lfs_ingested' "$WORK/trove.log" |
    grep -o 'via=[^ ]*\|size_bytes=[^ ]*\|receive_ms=[^ ]*\|chunk_ms=[^ ]*\|chunk_cpu_ms=[^ ]*\|chunk_wait_ms=[^ ]*\|lookup_ms=[^ ]*\|pack_ms=[^ ]*\|publish_ms=[^ ]*\|record_ms=[^ ]*\|spanning_bytes=[^ ]*\|after_receive_ms=[^ ]*' |
    paste -sd' ' | sed 's/ via=/\nvia=/g' || true
