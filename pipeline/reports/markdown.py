"""Human-readable views of a report: Markdown for report.md and a short verdict for the terminal.
Both read the report dict only; nothing here re-runs or recomputes anything."""

from __future__ import annotations

from typing import Any

from pipeline import plan
from pipeline.records import Status

VERDICT = {
    Status.PASS: "PASS",
    Status.TOLERANCE_FAIL: "TOLERANCE FAIL",
    Status.ERROR: "ERROR",
    Status.SKIPPED: "skipped",
}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Port verification: {result['model']} vs `{result['config']['torch_module']}`"
        if result.get("tool") == "tf2torch verify"
        else f"# Conversion report: {result['model']}",
        "",
        f"- **Verdict: {VERDICT[result['status']]}** (exit code {result['exit_code']})",
        f"- Format: `{result['format']}`, opset {result['config']['opset']}, seed {result['config']['seed']}, "
        f"{result['config']['samples']} sample batch(es)",
        f"- Started {result['started_at']}, took {result['seconds']:.1f} s",
        "- Worker processes: "
        + (
            ", ".join(
                f"{name} {w['seconds']:.1f} s, peak {w['peak_rss_mb']:.0f} MB"
                for name, w in result.get("workers", {}).items()
            )
            or "none ran"
        ),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
        "",
    ]
    if result.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if result.get("inputs"):
        lines += ["## Inputs", "", "| name | dtype | shape | range | padding |", "|---|---|---|---|---|"]
        lines += [
            f"| `{i['name']}` | {i['dtype']} | {list(i['shape'])} | [{i['low']:g}, {i['high']:g}) | "
            f"{_cell(_padding_text(i.get('padding')))} |"
            for i in result["inputs"]
        ]
        lines.append("")
        lines += _layout_lines(result)
    lines += _exercised_lines(result)
    lines += ["## Stages", "", "| stage | verdict | seconds | note |", "|---|---|---|---|"]
    for stage in result["stages"]:
        note = stage.get("error") or stage.get("reason") or ""
        lines.append(
            f"| {stage['name']} | {VERDICT[stage['status']]} | {stage['seconds']:.2f} | {_cell(note)} |"
        )
    rows = [c for s in result["stages"] for c in s["comparisons"]]
    if rows:
        lines += [
            "",
            "## Comparisons",
            "",
            "Rule `elementwise`: an element passes when |candidate - reference| <= atol + rtol * |reference|, "
            "and a comparison passes when the fraction of failing elements is at most max_mismatch. Rule "
            "`max`/`p99`/`mean`: that statistic of the error must be <= atol + rtol * the same statistic of "
            "|reference|. Top-1/top-5: agreement on the best class, for outputs with a last axis of scores.",
            "",
            "| pair | output | abs diff p50 / p90 / p99 / max | max rel diff | mismatch | cosine | top-1 | top-5 "
            "| rule | atol | rtol | passed |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in rows:
            if "error" in c:
                lines.append(f"| {c['pair']} | `{c['output']}` | {_cell(c['error'])} | | | | | | | | | no |")
                continue
            spread = " / ".join(
                f"{c[k]:.3g}" for k in ("p50_abs_diff", "p90_abs_diff", "p99_abs_diff", "max_abs_diff")
            )
            lines.append(
                f"| {c['pair']} | `{c['output']}` | {spread} | {c['max_rel_diff']:.3g} | "
                f"{c['mismatch_fraction']:.3%} | {c['cosine_similarity']:.6f} | {_share(c['top1_agreement'])} | "
                f"{_share(c['top5_agreement'])} | {c['stat']} | {c['atol']:g} | {c['rtol']:g} | "
                f"{'yes' if c['passed'] else '**no**'} |"
            )
    if any(s["status"] == Status.SKIPPED for s in result["stages"]):
        lines += ["", "Skipped stages were not run, so nothing was compared for them."]
    lines += _localization_markdown(result.get("localization"))
    lines += _port_markdown(result.get("port"))
    lines += _training_markdown(next((st for st in result["stages"] if st["name"] == "training"), None))
    lines.append("")
    return "\n".join(lines)


def _port_markdown(port: dict[str, Any] | None) -> list[str]:
    """`verify`: what went wrong with the port, then the mapping table."""
    if port is None:
        return []
    lines = ["", "## Hand-written port", "", f"`{port['torch_module']}`", ""]
    problems = _port_problems(port)
    if problems:
        lines += ["### Problems", ""] + [f"- {p}" for p in problems] + [""]
    lines += [
        "### Weight mapping",
        "",
        "| TF variable | TF shape | torch parameter | torch shape | transform |",
    ]
    lines.append("|---|---|---|---|---|")
    for row in port["rows"]:
        sources = "<br>".join(f"`{v}`" for v in row["tf_variables"]) or "(none)"
        shapes = "<br>".join(str(tuple(s)) for s in row["tf_shapes"] if s) or "-"
        lines.append(
            f"| {sources} | {shapes} | `{row['torch_parameter']}` | {tuple(row['torch_shape'])} | "
            f"{_cell(row['transform'])} |"
        )
    return lines + [""]


def _training_markdown(stage: dict[str, Any] | None) -> list[str]:
    details = (stage or {}).get("details")
    if not details:
        return []
    if "optimizer" not in details:  # the stage was skipped: there is no model.py to train
        return [
            "",
            "## Training",
            "",
            f"Skipped: {details.get('skipped') or stage.get('error') or 'not run'}.",
        ]
    optimizer = details["optimizer"]
    lines = ["", "## Training", "", f"`train.py`: Keras {optimizer['keras']} -> `{optimizer['torch']}`; "]
    losses = details.get("losses") or []
    if len(losses) == 1:
        lines[-1] += f"loss `{losses[0]['torch']}`."
    else:
        lines[-1] += (
            "losses " + ", ".join(f"{x['output']}: `{x['torch']}` x {x['weight']:g}" for x in losses) + "."
        )
    if details.get("ties"):
        lines += ["", f"model.py's parameters and the Keras variables: tied {details['ties']}."]
    lines += ["", *_training_settings_table(details)]
    if details.get("dropout_disabled"):
        lines += ["", f"Dropout disabled for the check: {', '.join(details['dropout_disabled'])}."]
    if "tf_losses" not in details:
        lines += ["", "No training check was run (`--training-check N`)."]
        return lines
    lines += [
        "",
        f"Training check, {details['steps']} steps:",
        "",
        "| step | TF loss | torch loss |",
        "|---|---|---|",
    ]
    lines += [
        f"| {i + 1} | {tf:.7g} | {pt:.7g} |"
        for i, (tf, pt) in enumerate(zip(details["tf_losses"], details["torch_losses"], strict=True))
    ]
    lines += ["", "| parameter | update max abs diff | passed |", "|---|---|---|"]
    lines += [
        f"| {c['output'].removeprefix('update:')} | {c['max_abs_diff']:.3g} | {c['passed']} |"
        for c in stage["comparisons"]
        if c["output"] != "loss" and "max_abs_diff" in c
    ]
    for name, diff in details.get("running_var_max_abs_diff", {}).items():
        lines.append(f"| {name} | {diff:.3g} | not judged (torch: unbiased variance) |")
    if details.get("optimizer_differences"):
        lines += ["", "Optimizer settings that differ from Keras's:", ""]
        lines += [f"- {d}" for d in details["optimizer_differences"]]
    return lines


def _training_settings_table(details: dict[str, Any]) -> list[str]:
    """Every Keras setting train.py carries: the optimizer's, its schedule, each loss and each weight
    regularizer, mapped; every TODO, not mapped (with its reason)."""
    rows = [
        (f"optimizer {r['keras']}", r["keras_value"], f"{r['torch']}={r['torch_value']}", "mapped")
        for r in details["settings"]
    ]
    schedule = details.get("schedule")
    if schedule:
        arguments = ", ".join(f"{k}={v}" for k, v in schedule["arguments"].items())
        rows.append(
            ("learning_rate schedule", f"{schedule['class_name']}({arguments})", "make_scheduler", "mapped")
        )
    rows += [
        (f"loss ({x['output']})", _keras_name(x["keras"]), f"{x['torch']} x {x['weight']:g}", "mapped")
        for x in details.get("losses") or []
    ]
    rows += [
        (
            f"regularizer {r['variable']}",
            f"{r['class_name']}({_arguments(r['config'])})",
            f"penalty on {r['parameter']}",
            "mapped",
        )
        for r in details.get("regularizers") or []
    ]
    rows += [("-", "-", "TODO in train.py", f"not mapped: {t}") for t in details.get("todos") or []]
    return [
        "| Keras setting | Keras value | train.py | status |",
        "|---|---|---|---|",
        *(
            f"| {_cell(str(a))} | {_cell(str(b))} | {_cell(str(c))} | {_cell(str(d))} |"
            for a, b, c, d in rows
        ),
    ]


def _keras_name(keras: Any) -> str:
    if isinstance(keras, dict):
        return f"{keras.get('class_name')}({_arguments(keras.get('config') or {})})"
    return str(keras)


def _arguments(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in config.items() if k != "name" and v is not None)


def _port_problems(port: dict[str, Any]) -> list[str]:
    problems = [f"shape mismatch: {m}" for m in port["mismatches"]]
    problems += [f"unmatched: {u['message']}" for u in port["unmatched"]]
    problems += [f"{f['severity']}: {f['message']}" for f in port["findings"]]
    if port.get("first_divergence"):
        problems.append(f"first divergence: {port['first_divergence']}")
    if port.get("forward_error"):
        problems.append(
            f"the port's forward failed on the first batch (before the transfer): {port['forward_error']}"
        )
    return problems


def port_lines(result: dict[str, Any]) -> list[str]:
    """`verify` on the terminal: the mapping table, then every problem found."""
    port = result.get("port")
    if port is None:
        return []
    lines = [f"  weight mapping ({len(port['rows'])} parameters):"]
    cells = [
        (
            ", ".join(r["tf_variables"]) or "-",
            " ".join(str(tuple(s)) for s in r["tf_shapes"] if s) or "-",
            f"{r['torch_parameter']} {tuple(r['torch_shape'])}",
            r["transform"],
        )
        for r in port["rows"]
    ]
    widths = [min(max((len(c[i]) for c in cells), default=0), 60) for i in range(3)]
    for source, shapes, target, transform in cells:
        lines.append(
            f"    {source:<{widths[0]}}  {shapes:<{widths[1]}} -> {target:<{widths[2]}}  {transform}"
        )
    for problem in _port_problems(port):
        first, *rest = problem.splitlines()
        lines.append(f"  ! {first}")
        lines += [f"    {line.strip()}" for line in rest]
    return lines


def _localization_markdown(localization: dict[str, Any] | None) -> list[str]:
    if localization is None:
        return []
    lines = ["", "## Localisation", ""]
    if localization["status"] != "done":
        return lines + [
            f"{localization['status']}: {localization.get('error') or localization.get('reason')}"
        ]
    lines += [
        "Every intermediate value was compared on the first input batch; the culprit is the first node "
        "(in graph order) whose output is outside tolerance while all it reads is within.",
    ]
    for pair, found in localization["pairs"].items():
        lines += ["", f"### {pair}", "", _pair_summary(found)]
        culprit = found.get("culprit")
        if not culprit:
            continue
        lines += ["", "Error along the path from the inputs to the failing output:", ""]
        lines += ["| value | node | op | max abs diff | within tolerance |", "|---|---|---|---|---|"]
        for row in culprit["path"]:
            marker = " **<- culprit**" if row["node"] == culprit["node"] else ""
            diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.3g}"
            lines.append(
                f"| `{row['value']}` | `{row['node'] or '-'}`{marker} | {row['op_type']} | {diff} | "
                f"{'yes' if row['passed'] else '**no**'} |"
            )
    return lines


def _pair_summary(found: dict[str, Any]) -> str:
    if found["status"] in ("skipped", "error"):
        return f"{found['status']}: {found.get('reason') or found.get('error')}"
    culprit = found.get("culprit")
    if culprit is None:
        tail = f"; {found['failing']} failing" if found["failing"] else ""
        return f"no node diverges ({found['compared']} values compared{tail})"
    worst_in = max((i.get("max_abs_diff") or 0.0 for i in culprit["inputs"]), default=0.0)
    worst_out = max(o.get("max_abs_diff") or 0.0 for o in culprit["outputs"] if not o["passed"])
    layouts = {
        tuple(v["permutation"]) for v in culprit["outputs"] + culprit["inputs"] if v.get("permutation")
    }
    layout = f"; compared after permuting axes {', '.join(map(str, sorted(layouts)))}" if layouts else ""
    return (
        f"first diverging node `{culprit['node']}` ({culprit['op_type']}): inputs max|diff| "
        f"{worst_in:.2e} (within tolerance), output max|diff| {worst_out:.2e}{layout}"
    )


def culprit_note(result: dict[str, Any]) -> str | None:
    """One line naming each pair's diverging node, for batch summaries; None if none was named."""
    pairs = (result.get("localization") or {}).get("pairs", {})
    named = [
        f"{pair} diverges first at {c['node']} ({c['op_type']})"
        for pair, f in pairs.items()
        if (c := f.get("culprit"))
    ]
    return "; ".join(named) or None


def localization_lines(result: dict[str, Any]) -> list[str]:
    """Terminal lines for the localisation, if it ran."""
    localization = result.get("localization")
    if localization is None:
        return []
    if localization["status"] != "done":
        reason = localization.get("error") or localization.get("reason")
        return [f"  {'localize':<12} {localization['status']}: {reason}"]
    return [
        f"  {'localize':<12} {pair}: {_pair_summary(found).replace('`', chr(39))}"
        for pair, found in localization["pairs"].items()
    ]


def stage_line(stage: dict[str, Any]) -> str:
    """One terminal line per stage: verdict, time, and the worst comparison or the error."""
    text = f"  {stage['name']:<12} {VERDICT[stage['status']]:<15} {stage['seconds']:6.1f}s"
    compared = [c for c in stage["comparisons"] if "max_abs_diff" in c]
    if stage["status"] in (Status.PASS, Status.TOLERANCE_FAIL) and compared:
        parts = []
        for pair in dict.fromkeys(c["pair"] for c in compared):
            rows = [c for c in compared if c["pair"] == pair]
            worst = max(rows, key=lambda c: c["max_abs_diff"])
            mark = "ok" if all(c["passed"] for c in rows) else "FAIL"
            parts.append(f"{pair} max|diff| {worst['max_abs_diff']:.2e} {mark}")
        text += "  " + "; ".join(parts)
    if stage.get("error"):
        text += "\n" + "\n".join("      " + line for line in stage["error"].splitlines())
    elif stage.get("reason"):
        text += f"  ({stage['reason']})"
    elif (stage.get("details") or {}).get("line"):
        text += f"  {stage['details']['line']}"
    return text


def _layout_lines(result: dict[str, Any]) -> list[str]:
    if result.get("tool") == "tf2torch verify":
        chosen = result["config"]["input_layout"]
        moved = (
            "4-D and 5-D inputs transposed to channels-first for the port, its outputs back"
            if chosen == "nchw"
            else "inputs as TF has them"
        )
        return [f"Port input layout: {chosen} ({moved}); the shapes above are TensorFlow's.", ""]
    load = next((s for s in result["stages"] if s["name"] == "load" and s.get("details")), None)
    chosen = (load or {}).get("details", {}).get("layout") if load else None
    if not chosen or chosen["layout"] == "nhwc":
        return ["Layout: nhwc (as in TensorFlow).", ""]
    images = ", ".join(f"`{n}`" for n in chosen["nchw_inputs"] + chosen["nchw_outputs"])
    return [
        f"Layout: nchw. The shapes above are TensorFlow's (NHWC); the ONNX and PyTorch models and the "
        f"artifacts hold {images} as NCHW.",
        "",
    ]


def verdict_line(result: dict[str, Any]) -> str:
    verdict = VERDICT[result["status"]]
    todos = next(
        (
            len(s["details"].get("todos") or [])
            for s in result["stages"]
            if s["name"] == plan.WRITES_TRAIN_PY and s.get("details")
        ),
        0,
    )
    if result["status"] == Status.PASS and todos:  # accepted by training_allow_todos
        verdict += f" with {todos} TODO(s) in train.py"
    line = f"  verdict: {verdict} (exit {result['exit_code']}); report: {result['out_dir']}/report.md"
    warnings = result.get("warnings") or []
    if warnings:
        line += f"\n  {len(warnings)} warning(s): " + "; ".join(warnings[:3])
        line += f"; and {len(warnings) - 3} more (report.md)" if len(warnings) > 3 else ""
    if result.get("kept_passing_run"):
        line += (
            f"\n  the passing run in {result['kept_passing_run']} is kept; this run was not published over it"
        )
    return line


def _padding_text(padding: dict[str, Any] | None) -> str:
    """What the generator chose: the padded batches' row lengths, the value and where it was read."""
    if not padding:
        return "none"
    what = "padding mask: 1 on real positions, " if padding["mask"] else ""
    batches = [f"batch {i}: {lengths}" for i, lengths in enumerate(padding.get("lengths") or []) if lengths]
    return (
        f"{what}{padding['value']:g} on the {padding['side']}; row lengths "
        + ("; ".join(batches) or "none (one row of full length)")
        + f" (from {padding['source']})"
    )


def _exercised_lines(result: dict[str, Any]) -> list[str]:
    validate = next((s for s in result["stages"] if s["name"] == "validate"), None)
    found = ((validate or {}).get("details") or {}).get("exercised")
    if not found:
        return []
    lines = [
        "## Branches, loops and masks exercised",
        "",
        f"Over {found['runs']} runs in onnxruntime (the sample batches and the second input shape):",
        "",
    ]
    if found["nodes"]:
        lines += ["| node | op | decided by | exercised |", "|---|---|---|---|"]
        for node in found["nodes"]:
            if "mask" in node:
                seen = (
                    f"mask `{node['mask']}`: True somewhere in {node['selected_true']} runs, False somewhere "
                    f"in {node['selected_false']}"
                )
            elif node["op"] == "If":
                seen = f"then {node['then']}, else {node['else']}"
            else:
                seen = "trip counts " + ", ".join(str(t) for t in node["trips"])
            lines.append(f"| `{node['node']}` | {node['op']} | input {node['decided_by']} | {seen} |")
        lines.append("")
    lines += [f"Not recorded: {what}." for what in found["not_recorded"]]
    return lines + ([""] if found["not_recorded"] else [])


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")
