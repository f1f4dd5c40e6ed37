"""The documentation site: `make docs` builds it with mkdocs --strict, its reference pages come from
the code (argument parser, pydantic models, API signatures), and a broken link fails the build."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import REPO

from pipeline.cli import build_parser
from pipeline.config import ModelConfig, Tolerances

BUILD = [sys.executable, str(REPO / "scripts" / "build_docs.py")]


def build(tmp_path: Path, docs: Path = REPO / "docs") -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    return subprocess.run(
        [*BUILD, "--docs", str(docs), "--site-dir", str(site), "--work", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("docs")
    done = build(tmp)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "site"


def test_every_page_of_docs_is_in_the_site(site):
    for page in (REPO / "docs").glob("*.md"):
        assert (site / page.with_suffix(".html").name).is_file(), page.name
    assert (site / "readme.html").is_file() and (site / "index.html").is_file()


def test_the_cli_reference_lists_every_command_and_option_of_the_parser(site):
    page = (site / "reference" / "cli.html").read_text()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert f"tf2torch {name}" in page
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"<code>{option}</code>" in page, (name, option)


def test_the_config_reference_lists_every_key_with_its_description(site):
    page = (site / "reference" / "config.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)  # the YAML block is split into highlighted tokens
    for model in (ModelConfig, Tolerances):
        for key, field in model.model_fields.items():
            assert f"<code>{key}</code>" in page, key
            assert field.description, f"{model.__name__}.{key} has no description"
    # The page says what a config that sets nothing means, from the same models.
    assert "external_data_threshold_mb: 1800" in text


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(REPO / "docs", docs)
    with (docs / "batch.md").open("a") as page:
        page.write("\nSee [the missing page](no-such-page.md).\n")
    done = build(tmp_path, docs)
    assert done.returncode == 1
    assert "no-such-page.md" in done.stderr and "batch.md" in done.stderr
    assert "mkdocs build --strict failed" in done.stderr
