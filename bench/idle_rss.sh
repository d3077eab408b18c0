#!/usr/bin/env bash
# Idle memory (issue #17). Not a test: it measures, it does not assert.
#
#   bench/idle_rss.sh BIN DATA [PORT]
#
# Starts `BIN serve` on the data dir DATA (e.g. a copy of the one bench/coldstart.sh seeds;
# one copy per binary, since a newer binary may migrate it), reads VmRSS and RssAnon from
# /proc/PID/status at the first 200 of /healthz, 10 s and 60 s later, and the peak (VmHWM),
# then stops the server with SIGTERM, by its PID. Everything stays on 127.0.0.1.
set -euo pipefail
BIN=$1
DATA=$2
PORT=${3:-18094}
LOG=$(mktemp)
mib() { awk -v k="$1" '$1 == k":" {print int($2 / 1024)}' "/proc/$PID/status"; }
TROVE_LOG=info "$BIN" serve --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
t0=$(date +%s%N)
until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null; do
    kill -0 "$PID" 2>/dev/null || { tail -n 5 "$LOG" >&2; exit 1; }
    sleep 0.01
done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
r0=$(mib VmRSS); a0=$(mib RssAnon)
sleep 10
r1=$(mib VmRSS)
sleep 50
r2=$(mib VmRSS); a2=$(mib RssAnon); hwm=$(mib VmHWM)
echo "| $BIN | $ms ms | $r0 MiB ($a0) | $r1 MiB | $r2 MiB ($a2) | $hwm MiB | $(cut -d' ' -f1-3 /proc/loadavg) |"
