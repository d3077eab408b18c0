# Sourced by bench/search/run.sh and bench/coldstart.sh: what both need of the seeded
# 100,000-repository data dir. Expects ROOT, BIN, REPOS and DATA to be set.

# What a report names a binary by: its path, build time and content hash (the checkout's
# HEAD says nothing about a binary built elsewhere), and the checkout's HEAD for reference.
describe_binary() {
    printf '%s (built %s, sha256 %s; checkout at %s)' "$1" \
        "$(date -u -r "$1" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?')" \
        "$(sha256sum "$1" 2>/dev/null | cut -c1-12 || echo '?')" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

# Seeds DATA once with `trove bench-seed-search` (about 2–3 minutes); later runs reuse it.
seed_once() {
    mkdir -p "$DATA"
    [[ -f "$DATA/.seeded" ]] && return 0
    echo "==> seeding $REPOS repositories into $DATA"
    local start
    start=$(date +%s)
    "$BIN" bench-seed-search --repos "$REPOS" --data-dir "$DATA" 2>&1 | tail -n 2
    echo "seeded in $(( $(date +%s) - start )) s"
    touch "$DATA/.seeded"
}
