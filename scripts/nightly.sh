#!/usr/bin/env bash
# Nightly (or any scheduled) batch run: converts a zoo, compares it with the previous run and keeps
# the last N summaries. Unchanged models come from the cache of the previous night.
#
#   scripts/nightly.sh [ZOO]          # default: configs/zoos/keras-applications.yaml
#
# Environment: NIGHTLY_DIR (default runs/nightly), NIGHTLY_KEEP (summaries kept, default 14),
# WORKERS (default: the number of cores), TF2TORCH (the command, default .venv/bin/tf2torch;
# e.g. "python -m pipeline"), NIGHTLY_PRUNE (default 1: a passing model's model files are deleted,
# its report kept, as `batch --prune`; the full zoo's would take over 20 GB; 0 keeps them).
# Layout: $NIGHTLY_DIR/<zoo>/work/ holds the models and the cache; history/<UTC time>/ one summary
# (summary.json, summary.md, junit.xml) per finished run; work/summary.html is the dashboard, with
# each model's trend over that history. The exit code is the batch's: 0 all
# passed, 1 a model failed or regressed against the previous run, 2 bad usage or the directory is
# locked by a run still going, 130/143 interrupted.
set -u
cd "$(dirname "$0")/.."

zoo=${1:-configs/zoos/keras-applications.yaml}
dir=${NIGHTLY_DIR:-runs/nightly}/$(basename "$zoo" .yaml)
keep=${NIGHTLY_KEEP:-14}
read -ra tf2torch <<< "${TF2TORCH:-.venv/bin/tf2torch}"  # may be a command with arguments
mkdir -p "$dir/history"

previous=$(find "$dir/history" -mindepth 1 -maxdepth 1 -type d | sort | tail -n 1)
args=(batch "$zoo" --out "$dir/work" --history "$dir/history")
[ -n "${WORKERS:-}" ] && args+=(--workers "$WORKERS")
[ "${NIGHTLY_PRUNE:-1}" != 0 ] && args+=(--prune)
[ -n "$previous" ] && [ -f "$previous/summary.json" ] && args+=(--baseline "$previous/summary.json")

"${tf2torch[@]}" "${args[@]}"
code=$?

# Only a run that finished (0 or 1) becomes history: a refused or interrupted run left the previous
# summary in work/, which must not be recorded twice.
if [ "$code" -eq 0 ] || [ "$code" -eq 1 ]; then
    stamp=$(date -u +%Y%m%dT%H%M%S.%NZ)
    mkdir -p "$dir/history/$stamp"
    cp "$dir/work/summary.json" "$dir/work/summary.md" "$dir/work/junit.xml" "$dir/history/$stamp/"
    find "$dir/history" -mindepth 1 -maxdepth 1 -type d | sort | head -n "-$keep" | xargs -r rm -rf
    echo "history: $dir/history/$stamp (keeping the last $keep)"
fi
exit "$code"
