#!/usr/bin/env bash
# Make sure a headless Chromium is on this machine: the tests render report.html and summary.html in
# it (scripts/render_report.sh). `make test` runs this first, so a fresh machine needs nothing by hand.
# Installs Debian's `chromium` package with apt-get, as root or through password-less sudo; otherwise
# says what to run and exits 2.
set -euo pipefail
found=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$found" ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "error: the tests need Chromium (headless) and this user cannot install it;" \
         "run: sudo apt-get install chromium" >&2
    exit 2
fi
if ! command -v apt-get >/dev/null; then
    echo "error: the tests need Chromium (headless); install your system's chromium package" >&2
    exit 2
fi
echo "installing Chromium for the report render tests (apt-get install chromium) ..."
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium >/dev/null
echo "chromium: $(chromium --version)"
