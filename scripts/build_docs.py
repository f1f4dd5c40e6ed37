"""Build the documentation site (mkdocs-material) from docs/, with the reference pages generated.

    python scripts/build_docs.py [--site-dir build/site] [--docs docs] [--work build]    (make docs)

The pages of docs/ are staged in build/docs-src/ together with three generated pages, so nothing
generated is committed and nothing can drift: reference/cli.md from the argument parser
(pipeline.cli.build_parser), reference/config.md from the pydantic models (pipeline.config), and
reference/python-api.md from the API's signatures and docstrings (pipeline.api). README.md becomes
the page readme.md (its links into docs/ rewritten); the navigation follows docs/index.md's table.
mkdocs runs with --strict: a broken link or a page missing from the site fails the build (exit 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import API_NAMES, api, cli, config  # noqa: E402

REFERENCE = "reference"
CONFIG_MODELS = (
    config.ModelConfig,
    config.InputSpec,
    config.PaddingSpec,
    config.Tolerances,
    config.Tolerance,
    config.ResolvedTolerance,
    config.CompileSettings,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="the pages (default: docs/)")
    parser.add_argument("--site-dir", type=Path, default=REPO / "build" / "site", help="where the site goes")
    parser.add_argument(
        "--work", type=Path, default=REPO / "build", help="where the staged pages and mkdocs.yml go"
    )
    args = parser.parse_args(argv)
    stage = args.work / "docs-src"
    shutil.rmtree(stage, ignore_errors=True)
    shutil.copytree(args.docs, stage)
    readme = (REPO / "README.md").read_text()
    (stage / "readme.md").write_text(re.sub(r"\]\(docs/", "](", readme))
    for page in stage.glob("*.md"):
        page.write_text(page.read_text().replace("](../README.md)", "](readme.md)"))
    (stage / REFERENCE).mkdir(exist_ok=True)
    (stage / REFERENCE / "cli.md").write_text(cli_reference(cli.build_parser()))
    (stage / REFERENCE / "config.md").write_text(config_reference())
    (stage / REFERENCE / "python-api.md").write_text(api_reference())
    site_config = stage.parent / "mkdocs.yml"
    site_config.write_text(yaml.safe_dump(mkdocs_config(stage, args.site_dir.resolve()), sort_keys=False))
    # Not --quiet: mkdocs then stops counting warnings, and --strict passes whatever they say.
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(site_config)],
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
    )
    problems = [line for line in done.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    for line in problems:
        print(line, file=sys.stderr)
    if done.returncode != 0:
        if not problems:
            print(done.stdout + done.stderr, file=sys.stderr)
        print(f"error: mkdocs build --strict failed (exit {done.returncode})", file=sys.stderr)
        return 1
    print(f"site: {args.site_dir / 'index.html'}")
    return 0


def mkdocs_config(stage: Path, site_dir: Path) -> dict[str, Any]:
    return {
        "site_name": "tf2torch",
        "site_description": "Convert TensorFlow models to PyTorch through ONNX, verifying every stage.",
        "docs_dir": str(stage),
        "site_dir": str(site_dir),
        "use_directory_urls": False,  # the site opens from disk (file://) as well as from a server
        "theme": {"name": "material", "features": ["navigation.sections", "content.code.copy"]},
        "markdown_extensions": ["tables", "toc", "admonition", "pymdownx.superfences"],
        "validation": {
            "omitted_files": "warn",
            "absolute_links": "warn",
            "unrecognized_links": "warn",
            "anchors": "warn",
        },
        "nav": navigation(stage),
    }


def navigation(stage: Path) -> list[Any]:
    """The pages in docs/index.md's table order, then the README and the generated reference."""
    index = (stage / "index.md").read_text()
    pages = [p for p in re.findall(r"^\| \[[^\]]+\]\(([^)]+\.md)\)", index, flags=re.M)]
    return [
        {"Home": "index.md"},
        {"README": "readme.md"},
        {"Guide": pages},
        {
            "Reference": [
                {"Command line": f"{REFERENCE}/cli.md"},
                {"Configuration": f"{REFERENCE}/config.md"},
                {"Python API": f"{REFERENCE}/python-api.md"},
            ]
        },
    ]


# ---------------------------------------------------------------------------------------------------
# The command line, from the parser


def cli_reference(parser: argparse.ArgumentParser) -> str:
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parser (`pipeline/cli.py`) when the site is built; "
        "`tf2torch COMMAND --help` prints the same.",
        "",
        "```",
        _plain(parser.format_usage()),
        "```",
        "",
    ]
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {a.dest: a.help for a in commands._choices_actions}
    for name, sub in commands.choices.items():
        lines += [f"## tf2torch {name}", "", summaries.get(name) or "", ""]
        if sub.description:
            lines += [sub.description, ""]
        lines += ["```", _plain(sub.format_usage()), "```", ""]
        lines += ["| argument | value | default | what |", "|---|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            lines.append(_argument_row(sub, action))
        lines.append("")
    return "\n".join(lines)


def _argument_row(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    name = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.choices:
        value = " \\| ".join(f"`{c}`" for c in action.choices)
    elif action.nargs == 0:
        value = "flag"
    else:
        value = f"`{action.metavar or action.dest.upper()}`" + (" (optional)" if action.nargs == "?" else "")
    default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
    text = (action.help or "") % {**vars(action), "prog": parser.prog}
    return f"| {name} | {value} | {default} | {_cell(text)} |"


def _plain(usage: str) -> str:
    return " ".join(usage.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------------
# The configuration, from the pydantic models


def config_reference() -> str:
    defaults = yaml.safe_dump(config.ModelConfig().model_dump(mode="json"), sort_keys=False)
    lines = [
        "# Configuration reference",
        "",
        "Generated from the pydantic models of `pipeline/config.py` when the site is built: these are "
        "the keys, types, limits and defaults the code validates against. How configs merge and how "
        "tolerances apply: [configuration.md](../configuration.md).",
        "",
    ]
    for model in CONFIG_MODELS:
        lines += [f"## {model.__name__}", "", inspect.getdoc(model) or "", ""]
        lines += ["| key | type | default | limits | what |", "|---|---|---|---|---|"]
        for key, field in model.model_fields.items():
            default = _default_text(field)
            lines.append(
                f"| `{key}` | {_type_text(field.annotation)} | {default} | {_limits(field)} | "
                f"{_cell(field.description or '')} |"
            )
        lines.append("")
    lines += [
        "## Every default",
        "",
        "A config file that sets nothing means this:",
        "",
        "```yaml",
        defaults,
        "```",
        "",
    ]
    return "\n".join(lines)


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    if isinstance(field.default, BaseModel):  # a whole section: its own table says
        name = type(field.default).__name__
        return f"see [{name}](#{name.lower()})"
    return f"`{json.dumps(field.default)}`"


def _type_text(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (Union, types.UnionType):
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return f"mapping of {_type_text(args[0])} to {_type_text(args[1])}"
    if origin is tuple:
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def _limits(field: Any) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "pattern": "matches"}
    found = []
    for item in field.metadata:
        for attribute, word in words.items():
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{word} `{value}`")
    return ", ".join(found)


# ---------------------------------------------------------------------------------------------------
# The Python API, from its signatures and docstrings


def api_reference() -> str:
    lines = [
        "# Python API reference",
        "",
        "Generated from `pipeline/api.py` when the site is built. A worked example: "
        "[python-api.md](../python-api.md).",
        "",
    ]
    for name in API_NAMES:
        obj = getattr(api, name)
        if inspect.isclass(obj):
            lines += [f"## class {name}", "", inspect.getdoc(obj) or "", ""]
            for field in dataclasses.fields(obj):
                lines.append(f"- `{field.name}`: {_annotation(field.type)}")
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, property):
                    lines.append(f"- `{attr}` (property): {_first_line(member.fget)}")
                elif isinstance(member, classmethod | staticmethod) or inspect.isfunction(member):
                    function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                    signature = str(inspect.signature(function)).replace("'", "")
                    lines.append(f"- `{attr}{signature}`: {_first_line(function)}")
            lines.append("")
        else:
            lines += [f"## {name}", "", "```python", _signature(name, obj), "```", ""]
            lines += [inspect.getdoc(obj) or "", ""]
    return "\n".join(lines)


def _signature(name: str, function: Any) -> str:
    """`name(` then one parameter a line, as a person would write a long signature."""
    signature = inspect.signature(function)
    params = [str(p).replace("'", "") for p in signature.parameters.values()]
    returns = str(signature.return_annotation).replace("'", "")
    return f"{name}(\n    " + ",\n    ".join(params) + f",\n) -> {returns}"


def _annotation(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return f"`{text}`"


def _first_line(obj: Any) -> str:
    return (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")


if __name__ == "__main__":
    sys.exit(main())
