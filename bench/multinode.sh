#!/usr/bin/env bash
# Commit throughput of one Trove node against two nodes on one PostgreSQL database and one data
# directory, and the latency of a few API calls on PostgreSQL against SQLite.
#
#   TROVE_BENCH_POSTGRES_URL=postgres://trove:pw@127.0.0.1:5432/postgres bench/multinode.sh
#
# The URL names a role allowed to create databases (scripts/test.sh's throwaway cluster is
# one); each run creates fresh databases. TROVE_BIN (default target/release/trove) is the
# server. Bounded: COMMITS commits per run (default 200) by WRITERS client threads
# (default 8), LATENCY_N calls per measured endpoint (default 200). Figures in
# docs/scale-out.md.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${TROVE_BENCH_POSTGRES_URL:?set TROVE_BENCH_POSTGRES_URL to a PostgreSQL URL of a role with CREATEDB}"
TROVE_BIN="${TROVE_BIN:-target/release/trove}"
PYTHON="${PYTHON:-.venv/bin/python}"
export TROVE_BIN TROVE_BENCH_POSTGRES_URL
export COMMITS="${COMMITS:-200}" WRITERS="${WRITERS:-8}" LATENCY_N="${LATENCY_N:-200}"
exec "$PYTHON" bench/multinode.py
