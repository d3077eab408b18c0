#!/usr/bin/env bash
# The core-hub transfer benchmark: Trove's downloads against nginx serving the same file,
# Trove's LFS upload against this machine's SHA-256 and write+fsync rates, CPU per GiB and
# peak RSS. A benchmark, not a test: it prints figures and says which aims are met; it fails
# only when something does not run. Results: docs/benchmarks.md.
#
#   bench/core.sh                 install what is missing, build, measure (about 6 minutes)
#
# Env: BENCH_ROUNDS (5)          interleaved rounds; medians are reported
#      BENCH_WRK_SECONDS (3)     duration of each wrk run
#      BENCH_BIG_UPLOAD_GIB (10) size of the upload watched for peak RSS (0 skips it)
#      BENCH_SIZES (1g,10m,4k,64k) which download files to measure: 1g and 10m (throughput),
#                                4k and 64k (request rates: a regular git file and an LFS file
#                                of that size each, wrk c=1/8/64)
#      BENCH_NO_UPLOAD_ROUNDS    set to skip the 1 GiB upload, SHA-256 and fsync per round
#      BENCH_DIR (/var/tmp)      where the temp dir goes: must be on the disk under test, not
#                                tmpfs; needs about BENCH_ROUNDS + BENCH_BIG_UPLOAD_GIB + 4 GiB
#                                (every upload sends bytes the store has not seen, so each is
#                                stored: a re-upload would be deduplicated, only looked up)
#      CARGO_TARGET_DIR          as for cargo (default ./target)
#      TROVE_BIN                 measure this trove binary instead of building one
#
# Servers bind to 127.0.0.1 only; every loop is bounded; the two servers it starts are stopped
# by PID and the temp dir (over 10 GiB) is removed on any exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HELPER="$ROOT/bench/core_helper.py"
ROUNDS="${BENCH_ROUNDS:-5}"
WRK_SECONDS="${BENCH_WRK_SECONDS:-3}"
BIG_UPLOAD_GIB="${BENCH_BIG_UPLOAD_GIB:-10}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
SIZES="${BENCH_SIZES:-1g,10m,4k,64k}"
NO_UPLOAD_ROUNDS="${BENCH_NO_UPLOAD_ROUNDS:-}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

WORK=""
TROVE_PID=""
NGINX_PID=""
HELPER_PID=""

# Stop one process we started: a polite signal, up to 30 s, then SIGKILL.
stop_pid() { # stop_pid PID SIGNAL
    local pid="$1" sig="$2" i
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$HELPER_PID" TERM
    stop_pid "$NGINX_PID" QUIT
    stop_pid "$TROVE_PID" TERM
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -rf -- "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

install_missing() {
    local -a missing=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    local sudo=""
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]} yourself"
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Wait until FILE holds a line matching REGEX (bounded), then print the first match.
wait_for_line() { # wait_for_line FILE REGEX PID SECONDS
    local file="$1" regex="$2" pid="$3" i
    for ((i = 0; i < $4 * 10; i++)); do
        if grep -Eo "$regex" "$file" 2>/dev/null | head -n1 | grep .; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# Wait until URL answers anything over HTTP (bounded).
wait_for_http() { # wait_for_http URL PID SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        curl -s -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

main() {
    [[ "$(uname -s)" == Linux ]] || die "this benchmark reads /proc: Linux only"
    install_missing
    local nginx_bin
    nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

    local trove_bin="${TROVE_BIN:-}"
    if [[ -z "$trove_bin" ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release --locked)
        trove_bin="$TARGET_DIR/release/trove"
    fi
    [[ -x "$trove_bin" ]] || die "no binary at $trove_bin"

    umask 022
    mkdir -p "$BENCH_DIR"
    WORK="$(mktemp -d "$BENCH_DIR/trove-bench.XXXXXX")"
    # nginx's workers run as an unprivileged user when started by root: let them read.
    chmod 0755 "$WORK"
    if [[ "$(stat -f -c %T "$WORK")" == tmpfs ]]; then
        die "$WORK is on tmpfs: set BENCH_DIR to a directory on disk"
    fi

    log "test files: 1 GiB and 10 MiB of random bytes in $WORK"
    head -c $((1 << 30)) /dev/urandom >"$WORK/big.bin"
    head -c $((10 << 20)) /dev/urandom >"$WORK/small.bin"
    # Written back now, so that the kernel's flusher is not busy during the measurements.
    sync "$WORK/big.bin" "$WORK/small.bin"

    log "starting trove serve"
    "$trove_bin" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 \
        >"$WORK/trove.out" 2>"$WORK/trove.err" &
    TROVE_PID=$!
    local trove_url
    trove_url="$(wait_for_line "$WORK/trove.out" 'http://127\.0\.0\.1:[0-9]+' "$TROVE_PID" 60)" \
        || { cat "$WORK/trove.err" >&2; die "trove did not start"; }
    wait_for_http "$trove_url/healthz" "$TROVE_PID" 30 || die "trove is not healthy"
    echo "trove pid $TROVE_PID at $trove_url" >&2

    log "starting nginx"
    local port
    port="$(python3 "$HELPER" free-port)"
    mkdir -p "$WORK/nginx/logs"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        location /files/ { alias $WORK/; }
    }
}
EOF
    "$nginx_bin" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' \
        2>"$WORK/nginx/logs/stderr.log" &
    NGINX_PID=$!
    local nginx_url="http://127.0.0.1:$port"
    wait_for_http "$nginx_url/" "$NGINX_PID" 30 \
        || { cat "$WORK/nginx/logs/"* >&2; die "nginx did not start"; }
    echo "nginx pid $NGINX_PID at $nginx_url" >&2

    log "measuring: a ${BIG_UPLOAD_GIB} GiB upload, then $ROUNDS rounds with wrk ${WRK_SECONDS}s per case"
    # In the background and waited for: bash runs a signal trap only once the foreground
    # command ends, and `wait` is interruptible, so Ctrl-C or SIGTERM stop the run at once.
    python3 "$HELPER" run \
        --trove "$trove_url" --trove-pid "$TROVE_PID" --token-file "$WORK/data/admin-token" \
        --nginx "$nginx_url" --nginx-pid "$NGINX_PID" \
        --big "$WORK/big.bin" --small "$WORK/small.bin" --scratch "$WORK" \
        --rounds "$ROUNDS" --wrk-seconds "$WRK_SECONDS" --big-upload-gib "$BIG_UPLOAD_GIB" \
        --sizes "$SIZES" ${NO_UPLOAD_ROUNDS:+--no-upload-rounds} \
        --json "$ROOT/bench/out/core-$(date -u +%Y%m%dT%H%M%SZ).json" &
    HELPER_PID=$!
    wait "$HELPER_PID"
    HELPER_PID=""
}

main "$@"
