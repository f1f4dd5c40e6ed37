#!/usr/bin/env bash
# Render a report.html in headless Chromium (Debian's `chromium` package):
#   scripts/render_report.sh runs/x/report.html            # prints the DOM Chromium parsed
#   scripts/render_report.sh runs/x/report.html shot.png   # writes a screenshot
# The flags keep Chromium off the network (this machine has none) and out of the user's profile.
set -euo pipefail
html=$(realpath "$1")
chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
    echo "error: chromium not found; install Debian's package: apt-get install chromium" >&2
    exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=${WINDOW:-1280,2400})
if [ $# -ge 2 ]; then
    "$chromium" "${flags[@]}" --screenshot="$(realpath -m "$2")" "file://$html" 2>/dev/null
    [ -s "$2" ] || { echo "error: no screenshot written" >&2; exit 1; }
else
    "$chromium" "${flags[@]}" --dump-dom "file://$html" 2>/dev/null
fi
