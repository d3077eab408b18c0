#!/usr/bin/env bash
# Garbage collection of a million chunks (xet.md §5.7, the GC part): a data dir is filled
# with condemned xorbs — real, valid xorbs packed by the server's packer and recorded with
# their chunks in the dedup index exactly as uploads record them, but named by no file (what
# deleting their repositories leaves) — then one real `trove gc --grace 0s` frees them all.
# Prints the time and peak RSS of the GC run, and of the seeding for scale. Results:
# docs/storage.md ("Figures").
#
#   bench/storage_gc.sh            about 2 minutes with a release build
#
# Env: BENCH_XORBS (1000)          condemned xorbs
#      BENCH_CHUNKS_PER_XORB (1000) chunks per xorb (BENCH_XORBS × this = chunks freed)
#      BENCH_CHUNK_BYTES (64)      bytes per chunk (small: the figure is per chunk, not per byte)
#      BENCH_DIR (/var/tmp)        where the temp data dir goes
#      TROVE_BIN                   trove binary (default: $CARGO_TARGET_DIR/release/trove, built)
#
# The one server started (only to create the data dir) binds 127.0.0.1 and is stopped by PID;
# the temp dir is removed on any exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
XORBS="${BENCH_XORBS:-1000}"
PER_XORB="${BENCH_CHUNKS_PER_XORB:-1000}"
CHUNK_BYTES="${BENCH_CHUNK_BYTES:-64}"
BENCH_DIR="${BENCH_DIR:-/var/tmp}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "/usr/bin/time (GNU time) is needed for peak RSS"
if [ -z "${TROVE_BIN:-}" ]; then
    log "building trove (release)"
    (cd "$ROOT" && cargo build --release -p trove --quiet)
    TROVE_BIN="$TARGET_DIR/release/trove"
fi
[ -x "$TROVE_BIN" ] || die "no trove binary at $TROVE_BIN"

WORK="$(mktemp -d "$BENCH_DIR/trove-bench-gc.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

DATA="$WORK/data"
log "creating a data dir"
"$TROVE_BIN" serve --data-dir "$DATA" --listen 127.0.0.1:0 >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
    [ -s "$DATA/admin-token" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "trove serve exited: $(tail -5 "$WORK/serve.log")"
    sleep 0.1
done
[ -s "$DATA/admin-token" ] || die "trove serve did not start"
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=""

measure() { # label, command...: runs it under GNU time, prints "<seconds> <peak KiB>"
    local label="$1"; shift
    /usr/bin/time -f '%e %M' -o "$WORK/$label.time" "$@" >"$WORK/$label.out" 2>"$WORK/$label.err" \
        || die "$label failed: $(tail -5 "$WORK/$label.err")"
    cat "$WORK/$label.time"
}

CHUNKS=$((XORBS * PER_XORB))
log "seeding $XORBS condemned xorbs × $PER_XORB chunks of $CHUNK_BYTES B ($CHUNKS chunks)"
read -r SEED_S SEED_KIB < <(measure seed "$TROVE_BIN" bench-seed-storage --data-dir "$DATA" \
    --xorbs "$XORBS" --chunks-per-xorb "$PER_XORB" --chunk-bytes "$CHUNK_BYTES")
DB_MIB=$(( $(stat -c %s "$DATA/trove.db") / 1048576 ))

log "trove gc --grace 0s"
read -r GC_S GC_KIB < <(measure gc "$TROVE_BIN" gc --grace 0s --data-dir "$DATA")
FREED=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["chunks_freed"], r["xorbs_deleted"], r["xorb_bytes_freed"])' "$WORK/gc.out")
read -r FREED_CHUNKS FREED_XORBS FREED_BYTES <<<"$FREED"
LEFT=$(find "$DATA/lfs/xorbs" -type f 2>/dev/null | wc -l)

printf '\nGC of %s chunks in %s xorbs (database %s MiB before GC)\n' "$CHUNKS" "$XORBS" "$DB_MIB"
printf '  seed:  %8.1f s  peak RSS %6d MiB\n' "$SEED_S" $((SEED_KIB / 1024))
printf '  gc:    %8.1f s  peak RSS %6d MiB  freed %s chunks, %s xorbs, %s B; %s xorb files left\n' \
    "$GC_S" $((GC_KIB / 1024)) "$FREED_CHUNKS" "$FREED_XORBS" "$FREED_BYTES" "$LEFT"
[ "$FREED_CHUNKS" -eq "$CHUNKS" ] || die "GC freed $FREED_CHUNKS chunks, expected $CHUNKS"
[ "$LEFT" -eq 0 ] || die "$LEFT xorb files left after GC"
