#!/usr/bin/env bash
# Run CI as it runs on a submission: a fresh clone of the current HEAD, `bash .ci/run` with CI=true
# and no standard input. Uncommitted changes are not included, so commit first.
# Usage: scripts/ci-clean-clone.sh [WORKDIR]   (default: a new temporary directory)
set -euo pipefail
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${1:-$(mktemp -d -t tf2torch-ci-XXXXXX)}
git clone --quiet "$repo" "$work/main"
[ -d "$repo/../shared" ] && ln -sfn "$(cd "$repo/../shared" && pwd)" "$work/shared"
echo "clean clone in $work/main; log in $work/ci.log"
cd "$work/main"
start=$(date +%s)
status=0
CI=true bash .ci/run </dev/null >"$work/ci.log" 2>&1 || status=$?
echo "exit $status after $(( $(date +%s) - start )) s"
tail -n 5 "$work/ci.log"
# A clone with its venv and test artifacts takes ~7 GB; keep only the log unless KEEP=1.
[ "${KEEP:-0}" = 1 ] || rm -rf "$work/main"
exit "$status"
