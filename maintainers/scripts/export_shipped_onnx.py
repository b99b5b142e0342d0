#!/usr/bin/env python3
"""Put zoo models in the box: maintainers/zoo/ZOO_NAME.safetensors -> src/ferlab/pretrained/BOX_NAME.onnx + .json.

    .venv/bin/python maintainers/scripts/export_shipped_onnx.py fer2013=fernet_distill2_vs   # (re)make one
    .venv/bin/python maintainers/scripts/export_shipped_onnx.py                              # remake every box model
    .venv/bin/python maintainers/scripts/export_shipped_onnx.py --check                      # exit 1 if one is stale

A model in the box is one ONNX file (the weights, stored once) and its sidecar, a copy of the zoo
checkpoint's with ``zoo_name`` added. The ONNX file is exported without constant folding, so every
tensor of the state dict keeps its name and PyTorch reads the same file back
(ferlab.research.nets.checkpoint.state_dict_from_onnx); float weights that float16 holds exactly (all of
them for a checkpoint stored in float16) are stored as float16, each followed by a Cast to
float32 that ONNX Runtime folds at load time, so it computes in float32 on exactly the
checkpoint's values at half the size. The file records the SHA-256 of the checkpoint it was
made from (metadata ``source_sha256``); ``--check`` compares it and the sidecar with the zoo.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.fileio import write_bytes  # noqa: E402
from ferlab.models.hub import PRETRAINED_DIR, shipped_models  # noqa: E402

ZOO = REPO / "maintainers" / "zoo"


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


def export(box_name: str, zoo_name: str) -> Path:
    import json

    from ferlab.fileio import write_json
    from ferlab.inference.onnx_format import export_bytes
    from ferlab.research.nets.checkpoint import load_checkpoint

    source = ZOO / f"{zoo_name}.safetensors"
    ckpt = load_checkpoint(source)
    data = export_bytes(ckpt, extra={"name": box_name, "source_sha256": sha256(source),
                                     "source": f"maintainers/zoo/{source.name}"})
    data = store_weights_as_fp16(unfolded(ckpt.model, data))
    target = PRETRAINED_DIR / f"{box_name}.onnx"
    write_bytes(target, data)
    write_json(target.with_suffix(".json"), {**json.loads(source.with_suffix(".json").read_text()), "zoo_name": zoo_name})
    return target


def stale(box_name: str, zoo_name: str) -> bool:
    import json

    from ferlab.inference.onnx_format import read_metadata

    onnx_path, source = PRETRAINED_DIR / f"{box_name}.onnx", ZOO / f"{zoo_name}.safetensors"
    if not onnx_path.is_file() or not source.is_file():
        return True
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    sidecar.pop("zoo_name", None)
    return (read_metadata(onnx_path).get("source_sha256") != sha256(source)
            or sidecar != json.loads(source.with_suffix(".json").read_text()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if a box model is missing or stale")
    ap.add_argument("pairs", nargs="*", metavar="BOX_NAME=ZOO_NAME", help="default: every box model, from its zoo_name")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split("=", 1)) for p in args.pairs]
    if any(len(p) != 2 for p in pairs):
        ap.error("give BOX_NAME=ZOO_NAME pairs")
    if not pairs:
        pairs = [(m.name, str(m.meta.get("zoo_name", ""))) for m in shipped_models()]
    if args.check:
        bad = [box for box, zoo in pairs if stale(box, zoo)]
        if bad:
            print("missing or stale box models (run maintainers/scripts/export_shipped_onnx.py): " + ", ".join(bad))
            return 1
        return 0
    for box, zoo in pairs:
        path = export(box, zoo)
        print(f"wrote {path.relative_to(REPO)} ({path.stat().st_size / 1e6:.1f} MB) from maintainers/zoo/{zoo}.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
