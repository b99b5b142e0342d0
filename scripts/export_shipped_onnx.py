#!/usr/bin/env python3
"""Write the ONNX twin of every shipped model: src/ferlab/pretrained/NAME.onnx.

    .venv/bin/python scripts/export_shipped_onnx.py [--check] [NAME ...]   (default: every shipped model)

The core install (``pip install ferlab``, no PyTorch) runs the shipped models from these files
with ONNX Runtime, so they must compute what the safetensors checkpoints compute. Each file
records the SHA-256 of the checkpoint it was made from (metadata ``source_sha256``), the class
names and Eq. (27)'s mean/std; tests/test_shipped_onnx.py checks both.

A checkpoint stored as float16 (``resnet18``) is exported with its weights stored as float16
too, each followed by a Cast to float32: ONNX Runtime folds the casts when it loads the model,
so it computes in float32 on exactly the checkpoint's values (lossless, since the checkpoint is
loaded into PyTorch the same way) at half the file size. float32 checkpoints stay float32.
``--check`` exits 1 when a file is missing or was made from other weights.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ferlab.fileio import write_bytes  # noqa: E402
from ferlab.models.hub import ShippedModel, shipped_models  # noqa: E402


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def store_weights_as_fp16(data: bytes) -> bytes:
    """float32 initializers -> float16 initializers + Cast(to=float32) nodes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) == 0:
            keep.append(init)
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values):  # only where it is lossless
            keep.append(init)
            continue
        stored = numpy_helper.from_array(half, init.name + "__fp16")
        keep.append(stored)
        casts.append(helper.make_node("Cast", [stored.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def unfolded(model: object, like: bytes) -> bytes:
    """The same export without constant folding, so BatchNorm stays a node and every weight
    keeps the checkpoint's exact (float16-representable) value; ONNX Runtime fuses Conv+BN at
    load time. The metadata is copied from ``like``, ferlab's regular export."""
    import io
    import warnings

    import onnx
    import torch

    from ferlab.constants import IMAGE_SIZE
    from ferlab.inference.onnx_format import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE),), buf, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=DEFAULT_OPSET, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          do_constant_folding=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.metadata_props.extend(onnx.load_from_string(like).metadata_props)
    proto.producer_name = "ferlab"
    return proto.SerializeToString()


def export(m: ShippedModel) -> Path:
    from ferlab.inference.onnx_format import export_bytes
    from ferlab.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(m.path)
    data = export_bytes(ckpt, extra={"name": m.name, "source_sha256": sha256(m.path),
                                     "source": f"ferlab/pretrained/{m.path.name}"})
    if m.meta.get("dtype") == "float16":
        data = store_weights_as_fp16(unfolded(ckpt.model, data))
    target = m.path.with_suffix(".onnx")
    write_bytes(target, data)
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if an ONNX file is missing or stale")
    ap.add_argument("names", nargs="*", help="only these shipped models")
    args = ap.parse_args(argv)
    stale = []
    unknown = set(args.names) - {m.name for m in shipped_models()}
    if unknown:
        ap.error(f"not shipped: {', '.join(sorted(unknown))}")
    for m in shipped_models():
        if args.names and m.name not in args.names:
            continue
        onnx_path = m.path.with_suffix(".onnx")
        if args.check:
            from ferlab.inference.onnx_format import read_metadata

            if not onnx_path.is_file() or read_metadata(onnx_path).get("source_sha256") != sha256(m.path):
                stale.append(m.name)
            continue
        path = export(m)
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size / 1e6:.1f} MB)")
    if stale:
        print("missing or stale ONNX (run scripts/export_shipped_onnx.py): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
