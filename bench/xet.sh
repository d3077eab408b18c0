#!/usr/bin/env bash
# The Xet transfer benchmark (see bench/xet_bench.py): a large file up and down through Xet
# and through the LFS path of Trove, against xet-core's simulation CAS server, and against
# nginx for the client's plain-HTTP download. Results: docs/benchmarks.md.
#
#   bench/xet.sh                  install what is missing, build, measure
#
# Env: BENCH_XET_GIB (2)         file size in GiB
#      BENCH_ROUNDS (3)          interleaved rounds; medians are reported
#      BENCH_DIR (/var/tmp)      work dir on the disk under test (needs ~3 × the file size)
#      CARGO_TARGET_DIR          as for cargo (default ./target)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOOLS="$TARGET_DIR/bench-tools"
# The reference server is the one published with the client's own crates, at the version of
# the hf_xet the tests pin.
XET_CLIENT_VERSION="1.8.0"

log() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    log "installing nginx-light"
    sudo=""; ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi

log "the Python client (scripts/test.sh --setup-only)"
"$ROOT/scripts/test.sh" --setup-only >/dev/null

log "cargo build --release"
(cd "$ROOT" && cargo build --release --locked --quiet)

if [[ ! -x "$TOOLS/bin/local_cas_server" ]]; then
    log "building xet-client $XET_CLIENT_VERSION's local_cas_server (the reference CAS), once"
    cargo install --quiet --locked --root "$TOOLS" --version "=$XET_CLIENT_VERSION" \
        --features simulation --bin local_cas_server xet-client
fi

exec "$ROOT/.venv/bin/python" "$ROOT/bench/xet_bench.py" \
    --trove "$TARGET_DIR/release/trove" \
    --sim "$TOOLS/bin/local_cas_server" \
    --python "$ROOT/.venv/bin/python" \
    --gib "${BENCH_XET_GIB:-2}" \
    --rounds "${BENCH_ROUNDS:-3}" \
    --bench-dir "${BENCH_DIR:-/var/tmp}" \
    --json "$TARGET_DIR/bench-xet.json"
