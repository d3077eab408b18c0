#!/usr/bin/env bash
# Git over HTTP benchmark: Trove against `git http-backend` behind nginx + fcgiwrap serving
# the very same bare repository, and `git lfs pull` of a large file against Trove and against
# nginx serving that file (with a static LFS batch answer). Pairs are interleaved (Trove,
# then the reference, round after round) and medians are printed with their ratios.
# Results: docs/benchmarks-git.md.
#
#   bench/git.sh
#
# Env: BENCH_ROUNDS (5)        interleaved rounds per measure
#      BENCH_ONLY              space-separated measures to run (default: all of
#                              clone fetch push push_main first_push lfs_pull)
#      BENCH_COMMITS (1000)    commits in the repository
#      BENCH_FILES (5000)      small files in the repository
#      BENCH_LFS_MIB (1024)    size of the LFS file, MiB
#      BENCH_DIR (/var/tmp)    work dir (needs ~3 × the LFS file)
#      TROVE_BIN               server binary (default: $CARGO_TARGET_DIR/release/trove, built)
#      TROVE_BASE_BIN          a second server binary to compare with (first_push only): it
#                              runs beside the first, and each round pushes to Trove, to
#                              this one, then to the reference
#
# Everything listens on 127.0.0.1 only; every process started here is stopped by PID on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${BENCH_ROUNDS:-5}"
COMMITS="${BENCH_COMMITS:-1000}"
FILES="${BENCH_FILES:-5000}"
LFS_MIB="${BENCH_LFS_MIB:-1024}"
FETCH_BEHIND=50     # commits a fetching clone is behind
PUSH_COMMITS=20     # commits per measured push
PUSH_FILES=100      # new files in them

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------
need_apt=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_apt+=(nginx-light)
command -v fcgiwrap >/dev/null 2>&1 || [[ -x /usr/sbin/fcgiwrap ]] || need_apt+=(fcgiwrap)
command -v git-lfs >/dev/null 2>&1 || need_apt+=(git-lfs)
if ((${#need_apt[@]})); then
    log "installing ${need_apt[*]}"
    sudo=""; ((EUID == 0)) || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
FCGIWRAP="$(command -v fcgiwrap || echo /usr/sbin/fcgiwrap)"
HTTP_BACKEND="$(git --exec-path)/git-http-backend"
[[ -x "$HTTP_BACKEND" ]] || die "no git-http-backend at $HTTP_BACKEND"

if [[ -z "${TROVE_BIN:-}" ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --locked --quiet)
    TROVE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/trove"
fi
[[ -x "$TROVE_BIN" ]] || die "no trove binary at $TROVE_BIN"

# --- workspace and cleanup ------------------------------------------------------------------
WORK="$(mktemp -d "${BENCH_DIR:-/var/tmp}/trove-bench-git.XXXXXX")"
PIDS=()
cleanup() {
    local pid
    # A negative entry is a process group (fcgiwrap and its workers).
    for pid in "${PIDS[@]}"; do
        kill -- "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 -- "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 -- "$pid" 2>/dev/null || true
    done
    [[ -n "${BENCH_KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export HOME="$WORK/home" GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
mkdir -p "$HOME"
git config --global user.name bench
git config --global user.email bench@example.invalid
git config --global init.defaultBranch main
git lfs install --skip-repo >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # wait_http URL: bounded wait for a server to answer
    local i
    for i in $(seq 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing answers at $1"
}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

# --- the repository -------------------------------------------------------------------------
# 1,000 commits adding 5,000 small files, written with fast-import; the fetch clone is made
# FETCH_BEHIND commits before the end.
# make_source DIR [SALT]: a bare repository of COMMITS commits adding FILES small files,
# written with fast-import; a salt makes every blob (and so every object) different.
make_source() {
    git init -q --bare "$1"
    python3 - "$COMMITS" "$FILES" "${2:-}" <<'PY' | git --git-dir="$1" fast-import --quiet
import sys
commits, files, salt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
per = max(1, files // commits)
out = sys.stdout.buffer
n = 0
for c in range(commits):
    out.write(b"commit refs/heads/main\n")
    out.write(b"committer bench <bench@example.invalid> %d +0000\n" % (1700000000 + c))
    msg = b"commit %d\n" % c
    out.write(b"data %d\n%s" % (len(msg), msg))
    count = per if c < commits - 1 else files - n
    for _ in range(count):
        body = (b"file %d%s: " % (n, salt)) + b"lorem ipsum dolor sit amet " * 8 + b"\n"
        out.write(b"M 100644 inline dir%02d/sub%02d/file%05d.txt\n" % (n % 50, (n // 50) % 20, n))
        out.write(b"data %d\n%s\n" % (len(body), body))
        n += 1
PY
    git --git-dir="$1" gc -q --aggressive --prune=now
    git --git-dir="$1" symbolic-ref HEAD refs/heads/main
}
log "generating a repository: $COMMITS commits, $FILES files"
SRC="$WORK/src.git"
make_source "$SRC"

# --- Trove ----------------------------------------------------------------------------------
# start_trove BIN DATA_DIR LOG_NAME: a Trove server of BIN on a free port, its port left
# in STARTED_PORT.
start_trove() {
    mkdir -p "$2"
    STARTED_PORT="$(free_port)"
    TROVE_LOG=warn "$1" serve --data-dir "$2" --listen "127.0.0.1:$STARTED_PORT" >"$WORK/$3.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$STARTED_PORT/healthz"
}
log "starting trove"
TDATA="$WORK/trove-data"
start_trove "$TROVE_BIN" "$TDATA" trove
TPORT="$STARTED_PORT"
TOKEN="$(cat "$TDATA/admin-token")"
TURL="http://git:$TOKEN@127.0.0.1:$TPORT"
# The binary to compare with, when given: a server of its own.
if [[ -n "${TROVE_BASE_BIN:-}" ]]; then
    [[ -x "$TROVE_BASE_BIN" ]] || die "no trove binary at $TROVE_BASE_BIN"
    BDATA="$WORK/base-data"
    start_trove "$TROVE_BASE_BIN" "$BDATA" base
    BPORT="$STARTED_PORT"
    BTOKEN="$(cat "$BDATA/admin-token")"
    BURL="http://git:$BTOKEN@127.0.0.1:$BPORT"
fi
create_repo() { # create_repo NAME [PORT TOKEN]
    curl -fsS -o /dev/null -X POST "http://127.0.0.1:${2:-$TPORT}/api/repos/create" \
        -H "authorization: Bearer ${3:-$TOKEN}" -H 'content-type: application/json' \
        -d "{\"name\": \"$1\", \"organization\": \"admin\", \"type\": \"model\"}"
}
create_repo bench
create_repo bench-lfs
# The generated history replaces the repository's initial commit (an admin may force-push).
git --git-dir="$SRC" push -q --force "$TURL/admin/bench" main:main
BARE="$(ls -d "$TDATA"/repos/*.git | head -1)"
[[ "$(git --git-dir="$BARE" rev-parse main)" == "$(git --git-dir="$SRC" rev-parse main)" ]] \
    || die "the push to trove did not land"
git --git-dir="$BARE" gc -q --prune=now

# --- the reference: git http-backend behind nginx + fcgiwrap, on the same bare repository ---
log "starting nginx + fcgiwrap + git http-backend"
NPORT="$(free_port)"
NGINX_DIR="$WORK/nginx"
mkdir -p "$NGINX_DIR/logs" "$NGINX_DIR/tmp" "$NGINX_DIR/static/lfs"
# fcgiwrap's workers outlive their parent; in a session of their own, they are stopped
# together through the group id (the PID of the leader).
setsid "$FCGIWRAP" -c 4 -s "unix:$NGINX_DIR/fcgiwrap.sock" >"$NGINX_DIR/logs/fcgiwrap.log" 2>&1 &
PIDS+=("-$!")
for _ in $(seq 100); do [[ -S "$NGINX_DIR/fcgiwrap.sock" ]] && break; sleep 0.1; done
[[ -S "$NGINX_DIR/fcgiwrap.sock" ]] || die "fcgiwrap did not start"
# Workers run as the invoking user: they must reach the private work dir and the socket.
NGINX_USER=""
((EUID == 0)) && NGINX_USER="user root;"
cat >"$NGINX_DIR/nginx.conf" <<EOF
$NGINX_USER
worker_processes 2;
pid $NGINX_DIR/nginx.pid;
error_log $NGINX_DIR/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $NGINX_DIR/tmp/body;
    fastcgi_temp_path $NGINX_DIR/tmp/fastcgi;
    proxy_temp_path $NGINX_DIR/tmp/proxy;
    uwsgi_temp_path $NGINX_DIR/tmp/uwsgi;
    scgi_temp_path $NGINX_DIR/tmp/scgi;
    sendfile on;
    server {
        listen 127.0.0.1:$NPORT;
        client_max_body_size 0;
        location = /ref.git/info/lfs/objects/batch {
            default_type application/vnd.git-lfs+json;
            alias $NGINX_DIR/static/batch.json;
            error_page 405 =200 \$uri;
        }
        location /lfs/ {
            alias $NGINX_DIR/static/lfs/;
        }
        location ~ ^/(ref|first)\.git(/.*)\$ {
            fastcgi_pass unix:$NGINX_DIR/fcgiwrap.sock;
            fastcgi_buffering off;
            fastcgi_request_buffering off;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $HTTP_BACKEND;
            fastcgi_param GIT_PROJECT_ROOT $NGINX_DIR/root;
            fastcgi_param GIT_HTTP_EXPORT_ALL 1;
            fastcgi_param PATH_INFO /\$1.git\$2;
            fastcgi_param HOME $HOME;
            fastcgi_param GIT_CONFIG_NOSYSTEM 1;
        }
    }
}
EOF
mkdir -p "$NGINX_DIR/root"
ln -s "$BARE" "$NGINX_DIR/root/ref.git"
# http-backend refuses anonymous pushes unless the repository allows them; Trove's own
# receive-pack ignores this setting.
git --git-dir="$BARE" config http.receivepack true
"$NGINX" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_http "http://127.0.0.1:$NPORT/ref.git/info/refs?service=git-upload-pack"
RURL="http://127.0.0.1:$NPORT/ref.git"

# --- what each measure runs ------------------------------------------------------------------
# clone URL → time of a no-checkout clone
clone_once() {
    rm -rf "$WORK/clone"
    local t0; t0=$(now)
    git clone -q --no-checkout "$1" "$WORK/clone"
    since "$t0"
}

# A clone FETCH_BEHIND commits behind, copied afresh for every fetch.
BEHIND="$WORK/behind-template"
git clone -q --no-checkout --bare "file://$SRC" "$BEHIND"
git --git-dir="$BEHIND" update-ref refs/heads/main "$(git --git-dir="$SRC" rev-parse "main~$FETCH_BEHIND")"
git --git-dir="$BEHIND" reflog expire --expire=now --all
git --git-dir="$BEHIND" gc -q --prune=now
fetch_once() {
    rm -rf "$WORK/fetch"
    cp -a "$BEHIND" "$WORK/fetch"
    local t0; t0=$(now)
    git --git-dir="$WORK/fetch" fetch -q "$1" main:refs/remotes/origin/main
    since "$t0"
}

# A clone with PUSH_COMMITS new commits (PUSH_FILES new files); each push goes to a new
# branch, deleted afterwards directly in the bare repository (unmeasured), so every push
# sends the same objects.
PUSHER="$WORK/pusher"
git clone -q "file://$SRC" "$PUSHER"
for c in $(seq "$PUSH_COMMITS"); do
    for f in $(seq $((PUSH_FILES / PUSH_COMMITS))); do
        mkdir -p "$PUSHER/pushed"
        head -c 300 /dev/urandom | base64 >"$PUSHER/pushed/c${c}-f${f}.txt"
    done
    git -C "$PUSHER" add pushed
    git -C "$PUSHER" commit -q -m "pushed commit $c"
done
PUSH_N=0
push_once() {
    PUSH_N=$((PUSH_N + 1))
    local branch="bench-push-$PUSH_N" t0 t
    t0=$(now)
    git -C "$PUSHER" push -q "$1" "HEAD:refs/heads/$branch" 2>"$WORK/push.err" || { cat "$WORK/push.err" >&2; return 1; }
    t=$(since "$t0")
    git --git-dir="$BARE" update-ref -d "refs/heads/$branch"
    echo "$t"
}
# The same push to `main`, the common case: Trove reindexes the repository (the model card,
# its file list) before it answers. `main` is set back afterwards (unmeasured).
MAIN_BEFORE="$(git --git-dir="$BARE" rev-parse refs/heads/main)"
push_main_once() {
    local t0 t
    t0=$(now)
    git -C "$PUSHER" push -q "$1" "HEAD:refs/heads/main" 2>"$WORK/push.err" || { cat "$WORK/push.err" >&2; return 1; }
    t=$(since "$t0")
    git --git-dir="$BARE" update-ref refs/heads/main "$MAIN_BEFORE"
    echo "$t"
}

# The first push of a whole repository (COMMITS commits, FILES files, made afresh for each
# push with different contents) into a repository created for it, both unmeasured: on Trove,
# a new repository created through the API; for the reference, another new Trove repository
# served by http-backend, so both sides start from the same initial commit (which the push
# replaces: `--force`, as the admin may).
new_trove_repo() { # new_trove_repo NAME [DATA PORT TOKEN] → the bare repository made for it
    local before after data="${2:-$TDATA}"
    before="$(ls -d "$data"/repos/*.git 2>/dev/null | sort)"
    create_repo "$1" "${3:-$TPORT}" "${4:-$TOKEN}"
    after="$(ls -d "$data"/repos/*.git | sort)"
    comm -13 <(echo "$before") <(echo "$after") | head -1
}
first_push_once() { # first_push_once trove|base|ref
    # Measures run in a subshell: a counter would not survive, the clock gives a new name.
    local name="first-$(date +%s%N)" src="$WORK/first-src.git" url dir t0 t
    # Objects no server has seen yet (nothing cached anywhere), like a real first push.
    rm -rf "$src"
    make_source "$src" "-$name"
    if [[ "$1" == base ]]; then
        dir="$(new_trove_repo "$name" "$BDATA" "$BPORT" "$BTOKEN")"
    else
        dir="$(new_trove_repo "$name")"
    fi
    [[ -n "$dir" ]] || die "no repository made for $name"
    if [[ "$1" == trove ]]; then
        url="$TURL/admin/$name"
    elif [[ "$1" == base ]]; then
        url="$BURL/admin/$name"
    else
        git --git-dir="$dir" config http.receivepack true
        rm -f "$NGINX_DIR/root/first.git"
        ln -s "$dir" "$NGINX_DIR/root/first.git"
        url="http://127.0.0.1:$NPORT/first.git"
    fi
    t0=$(now)
    git --git-dir="$src" push -q --force "$url" main:main 2>"$WORK/push.err" || { cat "$WORK/push.err" >&2; return 1; }
    t=$(since "$t0")
    [[ "$(git --git-dir="$dir" rev-parse main)" == "$(git --git-dir="$src" rev-parse main)" ]] \
        || die "the first push to $name did not land"
    echo "$t"
}

# --- LFS ------------------------------------------------------------------------------------
log "preparing a ${LFS_MIB} MiB LFS file"
LFSREPO="$WORK/lfs-work"
git clone -q "$TURL/admin/bench-lfs" "$LFSREPO"
git -C "$LFSREPO" lfs track '*.bin' >/dev/null
head -c "$((LFS_MIB * 1024 * 1024))" /dev/urandom >"$LFSREPO/big.bin"
git -C "$LFSREPO" add .gitattributes big.bin
git -C "$LFSREPO" commit -q -m "big file"
git -C "$LFSREPO" push -q origin main >/dev/null 2>&1
OID="$(sha256sum "$LFSREPO/big.bin" | cut -d' ' -f1)"
SIZE="$(stat -c %s "$LFSREPO/big.bin")"
# Trove holds the object as chunks in xorbs (an LFS upload is packed while it arrives), so
# nginx serves its own copy of the same bytes.
cp "$LFSREPO/big.bin" "$NGINX_DIR/static/lfs/$OID"
cat >"$NGINX_DIR/static/batch.json" <<EOF
{"transfer":"basic","objects":[{"oid":"$OID","size":$SIZE,"actions":{"download":{"href":"http://127.0.0.1:$NPORT/lfs/$OID"}}}]}
EOF
lfs_pull_once() { # lfs_pull_once LFS_URL
    rm -rf "$LFSREPO/.git/lfs/objects" "$LFSREPO/big.bin"
    git -C "$LFSREPO" config lfs.url "$1"
    sync
    local t0; t0=$(now)
    git -C "$LFSREPO" lfs pull
    since "$t0"
}

# --- run ------------------------------------------------------------------------------------
declare -A RESULTS
ONLY="${BENCH_ONLY:-clone fetch push push_main first_push lfs_pull}"
selected() { [[ " $ONLY " == *" $1 "* ]]; }
measure() { # measure NAME FUNCTION TROVE_ARG REFERENCE_ARG [BASE_ARG]
    local name="$1" fn="$2" base="${5:-}" i t r b
    selected "$name" || return 0
    "$fn" "$3" >/dev/null; "$fn" "$4" >/dev/null   # warm-up, not counted
    [[ -z "$base" ]] || "$fn" "$base" >/dev/null
    for i in $(seq "$ROUNDS"); do
        t=$("$fn" "$3")
        if [[ -n "$base" ]]; then
            b=$("$fn" "$base")
            RESULTS["$name:base"]+="$b "
        fi
        r=$("$fn" "$4")
        RESULTS["$name:trove"]+="$t "
        RESULTS["$name:ref"]+="$r "
        log "$name round $i: trove ${t}s,${base:+ base ${b}s,} reference ${r}s (load $(cut -d' ' -f1 /proc/loadavg))"
    done
}

measure clone clone_once "$TURL/admin/bench" "$RURL"
measure fetch fetch_once "$TURL/admin/bench" "$RURL"
measure push push_once "$TURL/admin/bench" "$RURL"
measure push_main push_main_once "$TURL/admin/bench" "$RURL"
measure first_push first_push_once trove ref ${TROVE_BASE_BIN:+base}
measure lfs_pull lfs_pull_once "$TURL/admin/bench-lfs.git/info/lfs" "http://127.0.0.1:$NPORT/ref.git/info/lfs"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo
echo "git $(git --version | cut -d' ' -f3), git-lfs $(git lfs version | cut -d' ' -f1 | cut -d/ -f2), $(nproc) CPUs, rounds=$ROUNDS"
echo "repository: $COMMITS commits, $FILES files ($(du -sh "$BARE/objects" | cut -f1) packed); fetch: $FETCH_BEHIND commits behind; push: $PUSH_COMMITS commits, $PUSH_FILES files; LFS file: $LFS_MIB MiB"
printf '%-10s %12s %12s %8s\n' measure "trove (s)" "reference (s)" ratio
for name in clone fetch push push_main first_push lfs_pull; do
    selected "$name" || continue
    t=$(echo "${RESULTS[$name:trove]}" | median)
    r=$(echo "${RESULTS[$name:ref]}" | median)
    printf '%-10s %12.3f %12.3f %8.2f\n' "$name" "$t" "$r" "$(calc "$t / $r")"
    if [[ -n "${RESULTS[$name:base]:-}" ]]; then
        b=$(echo "${RESULTS[$name:base]}" | median)
        printf '%-10s %12.3f %12.3f %8.2f   (TROVE_BASE_BIN; trove / base %.2f)\n' \
            "  base" "$b" "$r" "$(calc "$b / $r")" "$(calc "$t / $b")"
    fi
done
mib=$((SIZE / 1024 / 1024))
selected lfs_pull || exit 0
t=$(echo "${RESULTS[lfs_pull:trove]}" | median); r=$(echo "${RESULTS[lfs_pull:ref]}" | median)
printf 'lfs_pull throughput: trove %.0f MiB/s, nginx %.0f MiB/s (%.2f× nginx)\n' \
    "$(calc "$mib / $t")" "$(calc "$mib / $r")" "$(calc "$r / $t")"
