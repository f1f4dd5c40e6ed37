"""The export sweep's TF half: each catalogue case (tf_cases.py) exported with the export stage's own
code, at each opset. Runs in a TF process (never import torch here):

    python -m pipeline.coverage.tf_export OUT_DIR [--opsets 17 18] [-k NAME ...]

For each case it writes OUT_DIR/<index>/inputs.npz, tf_outputs.npz and opset<N>.onnx (when the export
succeeded), and OUT_DIR/cases.json with each case's export outcome per opset. The torch half
(export_sweep.py) validates and imports what was written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from pipeline.common import inputs  # noqa: E402
from pipeline.errors import UnsupportedOpsError, first_line  # noqa: E402


def export_case(case, opsets: list[int], folder: Path) -> dict:
    import keras
    import tensorflow as tf

    from pipeline.tf_worker.stages import fill_output_ranks, order_graph_io, unknown_onnx_ops
    from pipeline.tf_worker.tf_models import FunctionModel

    record = {
        "name": case.name,
        "group": case.group,
        "known": case.known,
        "known_opsets": list(case.known_opsets),
        "atol": case.atol,
        "rtol": case.rtol,
    }
    keras.utils.set_random_seed(0)
    try:
        function = tf.function(case.build())
        signature = [
            tf.TensorSpec((None, *a.shape[1:]) if a.batch else a.shape, a.dtype, name=f"arg{i}")
            for i, a in enumerate(case.args)
        ]
        model = FunctionModel(function, signature)
        specs = [
            inputs.ConcreteInput(f"arg{i}", a.dtype, a.shape, a.low, a.high) for i, a in enumerate(case.args)
        ]
        feeds = {name: value[0] for name, value in inputs.generate(specs, seed=0, samples=1).items()}
        outputs = model.run(feeds)
    except Exception as exc:  # noqa: BLE001 - the case itself does not run in TF: a catalogue error
        record["error"] = f"the case does not run in TF: {type(exc).__name__}: {first_line(exc)}"
        return record
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "inputs.npz", **feeds)
    np.savez(folder / "tf_outputs.npz", **outputs)
    record["exports"] = {}
    for opset in opsets:
        try:
            proto = model.to_onnx(opset)
            leftover = unknown_onnx_ops(proto.graph, opset)
            if leftover:
                raise UnsupportedOpsError("export", "tf2onnx", leftover)
            order_graph_io(proto, [i.name for i in model.inputs], model.outputs)
            fill_output_ranks(proto, {name: np.ndim(value) for name, value in outputs.items()})
        except Exception as exc:  # noqa: BLE001 - any export failure is this case's outcome
            record["exports"][str(opset)] = {"status": "failed", "detail": _describe(exc)}
            continue
        (folder / f"opset{opset}.onnx").write_bytes(proto.SerializeToString())
        record["exports"][str(opset)] = {"status": "passed", "detail": ""}
    return record


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedOpsError):
        return str(exc)
    return f"{type(exc).__name__}: {first_line(exc)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.coverage.tf_export")
    parser.add_argument("out", type=Path, help="folder to export into, or a file for --list")
    parser.add_argument("--opsets", type=int, nargs="+", default=[17, 18])
    parser.add_argument("-k", dest="name_filters", action="append")
    parser.add_argument(
        "--list", action="store_true", help="only write the catalogue (name, group, known) as JSON"
    )
    args = parser.parse_args(argv)

    from pipeline.coverage.tf_cases import all_cases, uncovered

    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    cases = [c for c in all_cases() if not args.name_filters or any(k in c.name for k in args.name_filters)]
    if args.list:
        listing = [
            {"name": c.name, "group": c.group, "known": c.known, "known_opsets": list(c.known_opsets)}
            for c in cases
        ]
        args.out.write_text(json.dumps(listing, indent=1))
        return 0
    records = []
    for index, case in enumerate(cases):
        # tf2onnx and Keras print to stdout; the sweep's output is the summary
        with contextlib.redirect_stdout(io.StringIO()):
            record = export_case(case, args.opsets, args.out / str(index))
        record["folder"] = str(index)
        records.append(record)
        if (index + 1) % 50 == 0 or index + 1 == len(cases):
            print(f"exported {index + 1}/{len(cases)} cases", file=sys.stderr, flush=True)
    catalogue = {"opsets": args.opsets, "cases": records, "uncovered": uncovered()}
    (args.out / "cases.json").write_text(json.dumps(catalogue, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
