"""Exports a model with tf2onnx's own ExtractImagePatches handler (which writes a Reshape to the
dimension -3 when the batch is unknown), so a test can check what the validate stage says about a
graph tf2onnx produced wrongly. Run as a script in its own process (it imports TensorFlow):

    python tests/upstream_patches_export.py OUT_DIR
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402
from tf2onnx.handler import tf_op  # noqa: E402

from pipeline.config import ModelConfig  # noqa: E402
from pipeline.tf_worker import stages as tf_stages  # noqa: E402 - registers the project's handlers first


class Patches(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="image")])
    def serve(self, image):
        return {"patches": tf.image.extract_patches(image, [1, 3, 3, 1], [1, 2, 2, 1], [1, 1, 1, 1], "VALID")}


def main(out: Path) -> None:
    from tf2onnx.onnx_opset.nn import ExtractImagePatches as Upstream

    # the upstream bug back, at every version the project's handler is registered for
    for version, handlers in enumerate(tf_op.get_opsets()[""]):
        if "ExtractImagePatches" in handlers:
            tf_op.register_handler(Upstream.version_9, version, ["ExtractImagePatches"], "", {})
    module = Patches()
    tf.saved_model.save(module, str(out / "model"), signatures={"serving_default": module.serve})
    cfg = ModelConfig(model=str(out / "model"), samples=1)
    state: dict = {}
    tf_stages.load(cfg, "saved_model", out, state)
    tf_stages.export(cfg, "saved_model", out, state)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
