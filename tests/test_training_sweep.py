"""The training sweep in CI: every class of keras.optimizers (with each option), keras.losses,
keras.regularizers and keras.optimizers.schedules of the installed Keras, converted with a 5-step
training check in float64, against docs/training.md's list of what is not mapped yet."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pipeline.coverage.training_sweep import LISTS, REPO, TRAINING_PAGE


@pytest.mark.slow
def test_the_training_sweep_maps_what_docs_training_md_says_and_prints_its_figures(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.coverage.training_sweep",
            "-v",
            "--json",
            str(tmp_path / "sweep.json"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    # Exit 1: a case fails that the page does not list (its reason is on stderr), or a listed one passes.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    printed = dict(re.findall(r"^training sweep, (\w+): (\d+/\d+) mapped", done.stdout, flags=re.MULTILINE))
    assert set(printed) == set(LISTS)
    section = TRAINING_PAGE.read_text()[TRAINING_PAGE.read_text().index("## Training sweep, measured") :]
    for name, figure in printed.items():
        mapped, total = figure.split("/")
        # The page's last column is the sweep as the code stands.
        assert re.search(
            rf"^\| keras\.\S*{name}\S*(?: x options)? \|.* {mapped} / {total} \|$", section, re.M
        ), f"docs/training.md's figure for {name} is not the measured {figure}"
