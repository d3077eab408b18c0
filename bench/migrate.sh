#!/usr/bin/env bash
# `trove migrate` throughput: an embedded hub holding BENCH_MIGRATE_MIB MiB of valid xorbs
# (made by the hidden `bench-seed-storage`, random chunks, so nothing compresses) moved into a
# fresh PostgreSQL database and an S3 bucket (s3s-fs on loopback), every xorb staged,
# validated and published with its size read back. Prints the time and MiB/s of the run.
# A benchmark, not a test. Results: docs/scale-out.md ("Moving an existing hub").
#
#   TROVE_BENCH_POSTGRES_URL=postgres://trove:pw@127.0.0.1:5432/postgres bench/migrate.sh
#
# Env: TROVE_BENCH_POSTGRES_URL   a role allowed to create databases (required)
#      BENCH_MIGRATE_MIB (1024)   object bytes to move
#      BENCH_CONCURRENCY (4)      --concurrency of the run
#      BENCH_DIR (/var/tmp)       where the temp dir goes (on the disk under test, not tmpfs)
#      TROVE_BIN                  the trove binary (default: $CARGO_TARGET_DIR/release/trove)
# s3s-fs is the one scripts/test.sh builds (cached in ~/.cache/trove-tools); it binds
# 127.0.0.1 and is stopped by PID on exit; the temp dir and the database are removed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools"
S3S_VERSION="0.14.1"
S3S_BIN="$CACHE_ROOT/s3s-fs-$S3S_VERSION/bin/s3s-fs"
MIB="${BENCH_MIGRATE_MIB:-1024}"
CONCURRENCY="${BENCH_CONCURRENCY:-4}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
TROVE_BIN="${TROVE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/trove}"
: "${TROVE_BENCH_POSTGRES_URL:?set TROVE_BENCH_POSTGRES_URL to a PostgreSQL URL of a role with CREATEDB}"

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[[ -x "$TROVE_BIN" ]] || die "no trove binary at $TROVE_BIN (cargo build --release -p trove, or set TROVE_BIN)"
[[ -x "$S3S_BIN" ]] || die "no s3s-fs at $S3S_BIN (scripts/test.sh builds it)"
command -v psql >/dev/null || die "psql not found (PATH=/usr/lib/postgresql/15/bin:\$PATH)"

WORK="$(mktemp -d "$BENCH_DIR/trove-migrate-bench.XXXXXX")"
DB_NAME="bench_migrate_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
S3_PID=""
SERVER_PID=""
cleanup() {
    if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    if [[ -n "$S3_PID" ]]; then kill "$S3_PID" 2>/dev/null || true; wait "$S3_PID" 2>/dev/null || true; fi
    psql -X -q "$TROVE_BENCH_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf -- "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

S3_PORT="$(free_port)"
mkdir -p "$WORK/s3/bench"
export AWS_ACCESS_KEY_ID="bench-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$S3S_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
S3_PID=$!
for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.1; done

# Xorbs of 1000 chunks of 64 KiB (~62.5 MiB each, near the protocol's 64 MiB cap).
CHUNK=65536 PER=1000
XORBS=$(( (MIB * 1048576 + CHUNK * PER - 1) / (CHUNK * PER) ))
DATA="$WORK/hub"
# A hub's first start creates its database, secret key and admin token; then it stops.
"$TROVE_BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    [[ -s "$DATA/admin-token" ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "trove serve exited: $(tail -5 "$WORK/serve.log")"
    sleep 0.1
done
[[ -s "$DATA/admin-token" ]] || die "trove serve did not start"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""
echo "seeding $XORBS xorbs of $PER × $CHUNK B"
"$TROVE_BIN" bench-seed-storage --data-dir "$DATA" --xorbs "$XORBS" --chunks-per-xorb "$PER" \
    --chunk-bytes "$CHUNK" >/dev/null
BYTES=$(find "$DATA/lfs/xorbs" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
psql -X -q "$TROVE_BENCH_POSTGRES_URL" -c "CREATE DATABASE $DB_NAME" >/dev/null
TARGET="${TROVE_BENCH_POSTGRES_URL%/*}/$DB_NAME"
sync

START=$(date +%s.%N)
TROVE_MIGRATE_TO="$TARGET" "$TROVE_BIN" migrate --data-dir "$DATA" --concurrency "$CONCURRENCY" \
    --storage "s3://bench/hub?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1" >"$WORK/migrate.out" 2>"$WORK/migrate.err" \
    || { cat "$WORK/migrate.err"; die "trove migrate failed"; }
END=$(date +%s.%N)
cat "$WORK/migrate.out"
python3 - "$START" "$END" "$BYTES" "$XORBS" "$CONCURRENCY" <<'PY'
import sys
start, end, size, xorbs, conc = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
secs = end - start
print(f"\ntrove migrate: {size / 2**20:.0f} MiB in {xorbs} xorbs, concurrency {conc}: "
      f"{secs:.1f} s, {size / 2**20 / secs:.1f} MiB/s (database + objects, each verified)")
PY
