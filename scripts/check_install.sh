#!/usr/bin/env bash
# A plain `pip install` of the wheel on a second Python, as a user without a clone would do it:
# builds the wheel from this checkout, installs it into a fresh virtual environment of PYTHON
# (default: python3.12, from PATH or pyenv), then runs `tf2torch --version` and the demo conversion
# from outside the checkout (so the checkout's own `pipeline/` cannot be what runs).
#
#   scripts/check_install.sh [PYTHON]          (make check-install; CI runs it)
#
# Exit codes: 0 installed and the demo passed, 1 a step failed, 2 no such Python here.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

python=${1:-}
if [ -z "$python" ]; then
    # A python3.12 on PATH that runs (a pyenv shim for a version not selected does not), else pyenv's.
    if python3.12 --version >/dev/null 2>&1; then
        python=$(command -v python3.12)
    else
        root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
        python=$(ls -d "$root"/versions/3.12*/bin/python 2>/dev/null | sort -V | tail -n 1 || true)
    fi
fi
if [ -z "$python" ] || ! "$python" --version >/dev/null 2>&1; then
    echo "error: no Python 3.12 found (PATH or pyenv); give one: scripts/check_install.sh /path/to/python" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)
echo "check-install: $("$python" --version) from $python"

# The wheel, built the way pip builds it for `pip install <clone>` (isolated, setuptools from PyPI).
"$python" -m venv "$work/build-env"
"$work/build-env/bin/python" -m pip install --quiet --upgrade pip
"$work/build-env/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$repo"
wheel=$(ls "$work"/dist/*.whl)
echo "wheel: $(basename "$wheel")"

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet --no-cache-dir "$wheel"
echo "installed in $(( $(date +%s) - started )) s"

cd "$work"
"$work/venv/bin/tf2torch" --version
TF_CPP_MIN_LOG_LEVEL=3 "$work/venv/bin/tf2torch" convert demo.cnn --out "$work/run"
test -f "$work/run/model.py" || { echo "error: no model.py written" >&2; exit 1; }
# The Python API from the installed package, outside the checkout.
"$work/venv/bin/python" -c "import pipeline, sys; r = pipeline.read_result('$work/run'); print('api:', r); sys.exit(0 if r.passed else 1)"
echo "check-install passed in $(( $(date +%s) - started )) s"
