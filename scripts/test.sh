#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every test.
#
#   scripts/test.sh                 setup + PostgreSQL + S3 server + fmt/clippy + cargo test
#                                   (both databases, both stores) + fuzz + optimized build +
#                                   e2e, then the core e2e files again on PostgreSQL + S3
#   scripts/test.sh --setup-only    only install system packages and the .venv
#   scripts/test.sh --e2e-only      setup + optimized build + e2e (skips lints and cargo test)
#   scripts/test.sh -- ARGS...      extra arguments for pytest (e.g. -- -k whoami -x, or
#                                   -- tests/e2e/test_git.py to run only that file)
#
# Env: TROVE_BIN overrides the server binary used by the e2e tests
#      (default: $CARGO_TARGET_DIR/e2e/trove, or target/e2e/trove, built here with the `e2e`
#      profile of Cargo.toml: release's optimisation without its link-time step).
#      TROVE_FUZZ_SECONDS: seconds per fuzz target (default 20; 0 skips the stage).
#      Exported for the tests: TROVE_TEST_POSTGRES_URL, TROVE_E2E_POSTGRES_URL (a throwaway
#      cluster started here), TROVE_TEST_S3_URL + AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (a
#      real S3 server, s3s-fs from crates.io, built once into ~/.cache/trove-tools: the first
#      run on a machine spends 15-35 min compiling it on 2 cores), both on loopback and
#      stopped on exit. The second e2e pass runs E2E_SCALE_FILES with every server on a fresh
#      PostgreSQL database and its own prefix of the bucket. TROVE_S3=0 skips the S3 server
#      (and the S3 half of the store's shared suite and of that pass).
#
# Works on a fresh Debian 12 machine with only the Rust toolchain and Python 3.11,
# run as root (CI runs `bash .ci/run`, no stdin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUIREMENTS="$ROOT/tests/e2e/requirements.txt"
# What is slow to install or build is kept outside the clone, keyed by version, so a fresh
# clone on the same machine reuses it (a fresh machine builds it once).
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools"
VENV="$ROOT/.venv"   # set by choose_venv
STAMP=""

SETUP_ONLY=0
RUN_CARGO_TEST=1
PYTEST_ARGS=()

declare -a SUMMARY=()
FAILED=0

log() { printf '\n==> %s\n' "$*"; }
record() { # record STAGE RESULT
    SUMMARY+=("$(printf '%-28s %-60s at %4d min' "$1" "$2" $((SECONDS / 60)))")
    if [[ "$2" == FAIL* ]]; then FAILED=1; fi
}

parse_args() {
    while (($#)); do
        case "$1" in
            --setup-only) SETUP_ONLY=1 ;;
            --e2e-only) RUN_CARGO_TEST=0 ;;
            --) shift; PYTEST_ARGS+=("$@"); break ;;
            -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
            *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
        esac
        shift
    done
}

pick_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then
            PYTHON="$(command -v "$candidate")"
            return 0
        fi
    done
    echo "no python3.11 / python3 found" >&2
    return 1
}

# 1. System packages: git, git-lfs, chromium and a Python able to create a venv.
#    apt is skipped entirely when everything is already there (fast reruns).
ensure_system_packages() {
    log "system packages"
    local -a missing=()
    command -v git >/dev/null 2>&1 || missing+=(git)
    command -v git-lfs >/dev/null 2>&1 || missing+=(git-lfs)
    # Headless Chromium drives the web UI tests.
    if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
        missing+=(chromium)
    fi
    if ! command -v python3.11 >/dev/null 2>&1 && ! command -v python3 >/dev/null 2>&1; then
        missing+=(python3 python3-venv)
    elif ! { pick_python && "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; }; then
        missing+=(python3-venv)
    fi
    if ((${#missing[@]} == 0)); then
        echo "all present: git, git-lfs, chromium, $(pick_python && "$PYTHON" --version 2>&1) with venv"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "missing ${missing[*]} and no apt-get to install them" >&2
        return 1
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
    echo "installing: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    pick_python
}

requirements_hash() { sha256sum "$REQUIREMENTS" | cut -d' ' -f1; }

# The virtualenv: a real `.venv` directory in the clone is used as it is (a developer's own);
# otherwise `.venv` is a link to a virtualenv in the cache named by the requirements and the
# Python version, so a new clone finds its packages installed.
choose_venv() {
    if [[ -d "$ROOT/.venv" && ! -L "$ROOT/.venv" ]]; then
        VENV="$ROOT/.venv"
    else
        pick_python
        local key
        key="$( { cat "$REQUIREMENTS"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)"
        VENV="$CACHE_ROOT/venv-$key"
        mkdir -p "$CACHE_ROOT"
        ln -sfn "$VENV" "$ROOT/.venv"
        # Older virtualenvs of this cache (other requirements) are removed, the newest two kept.
        { ls -1dt "$CACHE_ROOT"/venv-* 2>/dev/null | grep -vx "$VENV" | tail -n +2 | xargs -r rm -rf; } || true
    fi
    STAMP="$VENV/.trove-requirements.sha256"
}

# In CI (a fresh clone each run) cargo's build directory lives in the cache too, keyed by the
# toolchain, so a later run rebuilds only what changed. Locally it stays `target/`.
choose_target_dir() {
    if [[ -n "$CI" && -z "${CARGO_TARGET_DIR:-}" ]]; then
        export CARGO_TARGET_DIR="$CACHE_ROOT/cargo-target-$(rustc -V | sha256sum | cut -c1-12)"
        echo "cargo target dir: $CARGO_TARGET_DIR"
    fi
}

# 2b. Room on disk. The two e2e passes write several GiB (their tmp dirs, the S3 server's
#     bucket), the builds several more in the target dir, and rustc's incremental state there
#     grows with every change: a directory per crate variant, kept after nothing uses it. So
#     incremental state untouched for two days is dropped on every run, and all of it when the
#     filesystem has less than TROVE_MIN_FREE_GIB (default 15) free; the free space is shown in
#     the summary, so that a test failing on a full disk says so. pytest keeps the tmp dirs of
#     failed tests only, of the last two sessions (tests/e2e/pytest.ini).
MIN_FREE_GIB="${TROVE_MIN_FREE_GIB:-15}"
free_gib() { df -Pk "$1" | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
ensure_disk_room() {
    log "disk"
    local target="${CARGO_TARGET_DIR:-$ROOT/target}" dir free
    [[ "$target" == /* ]] || target="$ROOT/$target"
    if [[ -d "$target" ]]; then
        while IFS= read -r dir; do
            find "$dir" -mindepth 1 -maxdepth 1 -type d -mtime +2 -exec rm -rf {} + 2>/dev/null || true
            if (($(free_gib "$target") < MIN_FREE_GIB)); then
                echo "less than $MIN_FREE_GIB GiB free: dropping $dir"
                rm -rf "$dir"
            fi
        done < <(find "$target" -maxdepth 3 -type d -name incremental)
    fi
    free="$(free_gib "${TMPDIR:-/tmp}")"
    echo "$free GiB free for temporary files, $(free_gib "$ROOT") GiB where the clone is"
    if ((free < MIN_FREE_GIB)); then
        record "disk" "low: $free GiB free in ${TMPDIR:-/tmp} (the tests write up to ~10 GiB)"
    else
        record "disk" "ok ($free GiB free)"
    fi
}

venv_is_current() {
    [[ -x "$VENV/bin/python" ]] || return 1
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(requirements_hash)" ]] || return 1
    "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import importlib.metadata as m
assert m.version("huggingface_hub") == "2.4.0"
import huggingface_hub, pytest, pytest_timeout, transformers, datasets, jinja2  # noqa: F401
PY
}

# 2. The virtualenv with the pinned client and test tools.
ensure_venv() {
    log "python virtualenv ($VENV)"
    if venv_is_current; then
        echo "reusing: $("$VENV/bin/python" --version 2>&1), huggingface_hub $("$VENV/bin/python" -c 'import huggingface_hub as h; print(h.__version__)')"
        return 0
    fi
    pick_python
    if [[ -d "$VENV" ]] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "existing .venv is broken; recreating"
        rm -rf "$VENV"
    fi
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
        "$VENV/bin/python" -m pip install -q -r "$REQUIREMENTS"
    requirements_hash >"$STAMP"
    venv_is_current || { echo "venv check failed after install" >&2; return 1; }
    echo "installed: huggingface_hub $("$VENV/bin/python" -c 'import huggingface_hub as h; print(h.__version__)')"
}

cargo_locked_flag() {
    if [[ -f "$ROOT/Cargo.lock" ]]; then echo "--locked"; fi
}

# 3a. Formatting and lints: rustfmt's layout, and clippy with every warning an error (the
#     workspace's [lints] forbid unwrap on input, dbg!, unsafe).
run_lints() {
    log "cargo fmt --check; cargo clippy --all-targets -D warnings"
    if ! (cd "$ROOT" && cargo fmt --all --check); then
        record "cargo fmt --check" "FAIL (run: cargo fmt --all)"
    else
        record "cargo fmt --check" "ok"
    fi
    # shellcheck disable=SC2046
    if (cd "$ROOT" && cargo clippy --workspace --all-targets $(cargo_locked_flag) -- -D warnings); then
        record "cargo clippy" "ok"
    else
        record "cargo clippy" "FAIL"
    fi
}

# 3b. Unit and integration tests of the Rust workspace.
run_cargo_test() {
    log "cargo test --workspace $(cargo_locked_flag)"
    # shellcheck disable=SC2046
    if (cd "$ROOT" && cargo test --workspace $(cargo_locked_flag)); then
        record "cargo test" "ok"
    else
        record "cargo test" "FAIL"
    fi
}

# 3c. A short fuzz run of every target in fuzz/ (docs/fuzzing.md has the longer one); a
#     crash, a leak of the memory limit or an input slower than the timeout fails the run.
#     cargo-fuzz is installed once into a cache outside the clone; RUSTC_BOOTSTRAP lets the
#     stable toolchain take the -Z flags it passes.
FUZZ_SECONDS="${TROVE_FUZZ_SECONDS:-20}"
FUZZ_TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools"
run_fuzz() {
    if [[ "$FUZZ_SECONDS" == 0 ]]; then
        record "fuzz" "skipped (TROVE_FUZZ_SECONDS=0)"
        return 0
    fi
    log "cargo fuzz: ${FUZZ_SECONDS}s per target"
    local cargo_fuzz="$FUZZ_TOOLS/bin/cargo-fuzz"
    if [[ ! -x "$cargo_fuzz" ]] && ! cargo install --locked --root "$FUZZ_TOOLS" cargo-fuzz; then
        record "fuzz" "FAIL (cargo install cargo-fuzz)"
        return 0
    fi
    local targets target
    local -a failed=()
    targets="$(cd "$ROOT" && "$cargo_fuzz" list)"
    # libFuzzer prints a status line per new input: each run goes to its own log, shown only
    # when the target fails (the last lines name the crashing input under fuzz/artifacts/).
    local logs="$ROOT/fuzz/logs"
    mkdir -p "$logs"
    for target in $targets; do
        mkdir -p "$ROOT/fuzz/corpus/$target"
        if (cd "$ROOT" && RUSTC_BOOTSTRAP=1 "$cargo_fuzz" run --sanitizer none "$target" \
                "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
                -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=1024) \
                >"$logs/$target.log" 2>&1; then
            echo "  $target: $(grep -E '^Done [0-9]+ runs' "$logs/$target.log" | tail -1)"
        else
            echo "  $target: FAILED; the end of $logs/$target.log:"
            tail -n 40 "$logs/$target.log"
            failed+=("$target")
        fi
    done
    if ((${#failed[@]} == 0)); then
        record "fuzz" "ok (${FUZZ_SECONDS}s per target)"
    else
        record "fuzz" "FAIL (${failed[*]}; see fuzz/artifacts/)"
    fi
}

# 3d. A throwaway PostgreSQL cluster (Debian's `postgresql` package, installed when missing)
#     for the PostgreSQL half of the tests: trove-db's unit tests (TROVE_TEST_POSTGRES_URL,
#     a database per test) and the e2e pass in PostgreSQL mode (TROVE_E2E_POSTGRES_URL, a
#     database per server). initdb refuses to run as root: the cluster belongs to the
#     package's `postgres` user then. fsync is off: the cluster dies with the run.
PG_DIR=""
PG_BIN=""
find_pg_bin() {
    local d
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        PG_BIN="$(dirname "$(readlink -f "$(command -v pg_ctl)")")"
        return 0
    fi
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then PG_BIN="$d"; return 0; fi
    done
    return 1
}

start_postgres() {
    log "PostgreSQL for the tests"
    if ! find_pg_bin; then
        local sudo=()
        if [[ "$(id -u)" != 0 ]]; then sudo=(sudo); fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql
        find_pg_bin || { record "postgresql" "FAIL (no initdb after installing postgresql)"; return 1; }
    fi
    command -v psql >/dev/null 2>&1 || export PATH="$PG_BIN:$PATH"
    PG_DIR="$(mktemp -d /tmp/trove-pg.XXXXXX)"
    local as=()
    if [[ "$(id -u)" == 0 ]]; then
        chown postgres: "$PG_DIR"
        as=(runuser -u postgres --)
    fi
    local port password
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    password="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
    # The superuser connects through the socket only; Trove's role by password over TCP,
    # without superuser rights (it owns the databases it is given, as in production).
    if ! "${as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1; then
        cat "$PG_DIR/initdb.log"; record "postgresql" "FAIL (initdb)"; return 1
    fi
    if ! "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null; then
        cat "$PG_DIR/server.log"; record "postgresql" "FAIL (pg_ctl start)"; return 1
    fi
    "${as[@]}" psql -X -q -h "$PG_DIR" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE trove LOGIN CREATEDB PASSWORD '$password'" \
        -c "GRANT pg_signal_backend TO trove" >/dev/null
    export TROVE_TEST_POSTGRES_URL="postgres://trove:$password@127.0.0.1:$port/postgres"
    export TROVE_E2E_POSTGRES_URL="$TROVE_TEST_POSTGRES_URL"
    record "postgresql" "ok ($("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port)"
}

stop_postgres() {
    [[ -n "$PG_DIR" && -f "$PG_DIR/data/postmaster.pid" ]] || return 0
    local pid
    pid="$(head -n 1 "$PG_DIR/data/postmaster.pid")"
    # SIGINT: PostgreSQL's fast shutdown; then wait for that process only.
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -rf "$PG_DIR"
}

# 4a. The server binary the e2e tests run.
build_server() {
    if [[ -n "${TROVE_BIN:-}" ]]; then
        log "using TROVE_BIN=$TROVE_BIN (no build)"
        if [[ -x "$TROVE_BIN" ]]; then record "server binary" "ok ($TROVE_BIN)"; return 0; fi
        record "server binary" "FAIL (TROVE_BIN not executable)"
        return 1
    fi
    log "cargo build --profile e2e $(cargo_locked_flag)"
    # shellcheck disable=SC2046
    if (cd "$ROOT" && cargo build --profile e2e -p trove $(cargo_locked_flag)); then
        local target="${CARGO_TARGET_DIR:-$ROOT/target}"
        [[ "$target" == /* ]] || target="$ROOT/$target"   # cargo ran from $ROOT
        local built="$target/e2e/trove"
        if [[ -x "$built" ]]; then
            export TROVE_BIN="$built"
            record "cargo build --profile e2e" "ok"
            return 0
        fi
        record "cargo build --profile e2e" "FAIL (no $built)"
        return 1
    fi
    record "cargo build --profile e2e" "FAIL"
    return 1
}

# 4b. End-to-end tests with the real huggingface_hub client and hf CLI.
run_e2e() {
    # The whole suite, unless the extra arguments name test files or folders themselves.
    local targets=(tests/e2e) arg
    for arg in "${PYTEST_ARGS[@]}"; do
        if [[ "$arg" == tests/* ]]; then targets=(); break; fi
    done
    log "pytest ${targets[*]:-${PYTEST_ARGS[*]}} (TROVE_BIN=$TROVE_BIN)"
    local rc=0
    (cd "$ROOT" && env -u HF_TOKEN -u HF_ENDPOINT -u HF_HOME -u TROVE_E2E_POSTGRES_URL \
        "$VENV/bin/python" -m pytest "${targets[@]}" "${PYTEST_ARGS[@]}") || rc=$?
    case "$rc" in
        0) record "e2e (pytest)" "ok" ;;
        5) record "e2e (pytest)" "FAIL (no tests collected)" ;;
        *) record "e2e (pytest)" "FAIL (pytest exit $rc)" ;;
    esac
}

# 3d. A real S3-compatible server on loopback: s3s-fs, an S3 protocol server over a
#     directory (crates.io; checks SigV4 signatures, presigned URLs included; multipart,
#     ranged GETs, copy, list). Chosen over Garage, whose build (several hundred crates) costs
#     far more CI time on two cores. Built once into the cache, keyed by version; started on
#     a free port with a temp data dir and fresh keys; stopped by pid when the script exits.
S3S_VERSION="0.14.1"
S3_PID=""
S3_DIR=""
stop_s3_server() {
    if [[ -n "$S3_PID" ]]; then
        kill "$S3_PID" 2>/dev/null || true
        wait "$S3_PID" 2>/dev/null || true
        S3_PID=""
    fi
    if [[ -n "$S3_DIR" ]]; then rm -rf "$S3_DIR"; S3_DIR=""; fi
}
start_s3_server() {
    if [[ "${TROVE_S3:-1}" == 0 ]]; then
        record "S3 server" "skipped (TROVE_S3=0)"
        return 1
    fi
    log "S3 server: s3s-fs $S3S_VERSION"
    local prefix="$CACHE_ROOT/s3s-fs-$S3S_VERSION" bin
    bin="$prefix/bin/s3s-fs"
    if [[ ! -x "$bin" ]]; then
        local started=$SECONDS
        # A test server needs no fully optimised build: opt-level 1, no debug info, no LTO
        # compiles faster on two cores, and loopback tests do not need more speed.
        if ! CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
                CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=64 \
                cargo install s3s-fs --locked --version "$S3S_VERSION" --features binary \
                --root "$prefix" --target-dir "$CACHE_ROOT/s3s-fs-build"; then
            record "S3 server" "FAIL (cargo install s3s-fs $S3S_VERSION)"
            return 1
        fi
        rm -rf "$CACHE_ROOT/s3s-fs-build"
        echo "built s3s-fs in $((SECONDS - started)) s"
    fi
    pick_python
    local port
    port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    S3_DIR="$(mktemp -d)"
    mkdir -p "$S3_DIR/data/trove-test"   # the bucket: a directory of the server's root
    export AWS_ACCESS_KEY_ID="trove-test-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    export AWS_SECRET_ACCESS_KEY="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    "$bin" --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
        --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3_DIR/data" >"$S3_DIR/s3s-fs.log" 2>&1 &
    S3_PID=$!
    local tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        tries=$((tries + 1))
        if ((tries > 100)) || ! kill -0 "$S3_PID" 2>/dev/null; then
            tail -n 20 "$S3_DIR/s3s-fs.log" || true
            record "S3 server" "FAIL (s3s-fs did not listen on $port)"
            stop_s3_server
            return 1
        fi
        sleep 0.1
    done
    export TROVE_TEST_S3_URL="s3://trove-test?endpoint=http://127.0.0.1:$port&region=us-east-1"
    export TROVE_E2E_S3_ROOT="$S3_DIR/data"   # where e2e tests look at stored bytes
    echo "s3s-fs on 127.0.0.1:$port (pid $S3_PID), TROVE_TEST_S3_URL=$TROVE_TEST_S3_URL"
    record "S3 server" "ok (s3s-fs $S3S_VERSION on :$port)"
}

# 4c. The scale-out pass: the core, Xet, git, access, search and object files again, each
#     server on a fresh PostgreSQL database (conftest.py) AND its own key prefix of the S3
#     server's bucket (conftest.py's s3_storage_env), plus the S3-only tests (test_s3.py).
#     Without an S3 server (TROVE_S3=0) the same files run on PostgreSQL alone. Also several
#     nodes on one database and one store (test_multinode.py, skipped in the SQLite pass), and
#     `trove migrate` of an embedded hub into both (test_migrate.py: needs PostgreSQL and S3).
E2E_SCALE_FILES=(tests/e2e/test_identity_and_repos.py tests/e2e/test_commits.py
    tests/e2e/test_xet.py tests/e2e/test_git.py tests/e2e/test_access_matrix.py
    tests/e2e/test_search.py tests/e2e/test_transfer.py tests/e2e/test_storage.py
    tests/e2e/test_s3.py tests/e2e/test_multinode.py tests/e2e/test_migrate.py)
stop_servers() {
    stop_s3_server
    stop_postgres
}
run_e2e_scale() {
    local name="e2e on PostgreSQL + S3" s3=()
    if [[ -n "${TROVE_TEST_S3_URL:-}" ]]; then
        s3=(TROVE_E2E_S3_URL="$TROVE_TEST_S3_URL")
    else
        name="e2e on PostgreSQL (no S3 server)"
    fi
    if [[ -z "${TROVE_E2E_POSTGRES_URL:-}" ]]; then
        record "$name" "FAIL (no PostgreSQL)"
        return 0
    fi
    for arg in "${PYTEST_ARGS[@]}"; do
        if [[ "$arg" == tests/* ]]; then record "$name" "skipped (files named)"; return 0; fi
    done
    log "pytest, $name: ${E2E_SCALE_FILES[*]}"
    local rc=0 started=$SECONDS
    (cd "$ROOT" && env -u HF_TOKEN -u HF_ENDPOINT -u HF_HOME "${s3[@]}" \
        "$VENV/bin/python" -m pytest "${E2E_SCALE_FILES[@]}" "${PYTEST_ARGS[@]}") || rc=$?
    case "$rc" in
        0) record "$name" "ok ($((SECONDS - started)) s)" ;;
        *) record "$name" "FAIL (pytest exit $rc)" ;;
    esac
}

print_summary() {
    log "summary"
    local line
    for line in "${SUMMARY[@]}"; do echo "  $line"; done
    if ((FAILED)); then echo "RESULT: FAILED"; else echo "RESULT: all passed"; fi
}

main() {
    parse_args "$@"
    cd "$ROOT"
    export CI="${CI:-}" PIP_NO_INPUT=1
    # Spaces builds (tests/e2e/test_spaces.py): uv and the gradio/streamlit wheels are cached
    # outside the clone, so only the first run on a machine downloads them.
    export TROVE_SPACES_CACHE="${TROVE_SPACES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trove-tools/spaces}"
    ensure_system_packages
    choose_venv
    choose_target_dir
    ensure_venv
    record "setup (apt + .venv)" "ok"
    if ((SETUP_ONLY)); then
        print_summary
        return 0
    fi
    ensure_disk_room
    trap stop_servers EXIT
    start_postgres || true
    start_s3_server || true
    if ((RUN_CARGO_TEST)); then
        run_lints
        run_cargo_test
        run_fuzz
    else
        record "cargo test" "skipped (--e2e-only)"
    fi
    if build_server; then
        run_e2e
        run_e2e_scale
    else
        record "e2e (pytest)" "FAIL (not run: no server binary)"
    fi
    print_summary
    return "$FAILED"
}

main "$@"
