#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png, the README's web UI tour: runs the browser tests that
# take them with TROVE_DOCS_SCREENSHOTS=1, so each page in tests/e2e/browser.py's TOUR is
# also saved at 1280×800 (each checked to stay under 300 KB). Needs what the e2e tests need
# (scripts/test.sh installs it): the venv with Playwright, Debian's chromium, a trove binary.
#
#   scripts/screenshots.sh                 TROVE_BIN, else target/release/trove
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
export TROVE_BIN="${TROVE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/trove}"
[[ -x "$TROVE_BIN" ]] || { echo "no trove binary at $TROVE_BIN: build it or set TROVE_BIN" >&2; exit 1; }
export TROVE_DOCS_SCREENSHOTS=1
cd "$ROOT/tests/e2e"
"$PYTHON" -m pytest -q -x \
    test_web_browser.py \
    "test_dataset_preview.py::test_preview_a_parquet_dataset_in_the_browser" \
    "test_web_signin.py::test_sign_in_with_a_write_token"
ls -l "$ROOT/docs/screenshots/"
