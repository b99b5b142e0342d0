"""Export a trained model to ONNX (optionally INT8-quantised), checked against PyTorch.

The file format (input, output, metadata) is described in :mod:`ferlab.inference.onnx_format`.

    from ferlab.inference.export import export_onnx

    out = export_onnx("fernet", "fernet.onnx")            # shipped name, checkpoint or run folder
    print(out.verification)                              # vs PyTorch on 64 random inputs: ...
    export_onnx("fernet", "fernet-int8.onnx", int8=True, calibration="fer2013/train")
    # calibrated on 2,000 train faces; refused unless it agrees with fp32 on >= 98% of
    # 1,000 PublicTest faces (fer2013/test/*/PublicTest_*), on any CPU (see onnx_format.INT8_SCHEME)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..constants import IMAGE_SIZE
from ..errors import FerlabError
from ..fileio import write_bytes
from .preprocess import faces_to_input, resize_face
from .onnx_format import DEFAULT_OPSET, export_bytes, quantize_int8


@dataclass(frozen=True)
class Verification:
    """How the exported file compares with the PyTorch model it came from."""

    inputs: int
    real_faces: bool  # face images (calibration folder or array), else random normal inputs
    top1_agreement: float
    max_prob_diff: float
    what: str | None = None  # which faces, e.g. "PublicTest faces"

    def __str__(self) -> str:
        what = self.what or ("faces" if self.real_faces else "random inputs")
        return (f"vs PyTorch on {self.inputs} {what}: top-1 agreement {self.top1_agreement * 100:.1f}%, "
                f"max |prob diff| {self.max_prob_diff:.2e}")


class OnnxExport(type(Path())):  # type: ignore[misc]
    """The written file's path (a :class:`pathlib.Path`), with what was checked on it."""

    verification: Verification | None = None
    int8: bool = False
    opset: int = DEFAULT_OPSET


# An exported fp32 model must give the same probabilities as PyTorch up to float error; INT8
# is allowed its quantisation error but must still pick the same class almost always.
FP32_MAX_PROB_DIFF = 1e-3
INT8_MIN_AGREEMENT = 0.98
CALIBRATION_COUNT = 2000  # min/max ranges from 2,000 train faces: 98.7% agreement, 300 gave 98.0%
CHECK_COUNT = 1000


def export_onnx(checkpoint_or_name: Any, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET,
                int8: bool = False, calibration: np.ndarray | str | os.PathLike[str] | None = None,
                calibration_count: int = CALIBRATION_COUNT, verify: bool = True,
                check: np.ndarray | str | os.PathLike[str] | None = None,
                min_agreement: float = INT8_MIN_AGREEMENT) -> OnnxExport:
    """Write the model to ``path`` (atomically) and return the path.

    ``checkpoint_or_name``: a loaded :class:`ferlab.models.Checkpoint`, a shipped model name,
    a checkpoint file or a run folder. With ``int8``, ``calibration`` holds (N, 48, 48) uint8
    faces, or a folder of face images (e.g. FER2013's ``train/``; ``calibration_count`` are
    used), for static quantisation.

    ``verify``: before anything is written, run the export in ONNX Runtime and the PyTorch
    model on the same inputs and raise a FerlabError if they disagree (fp32: probabilities
    further apart than float error; INT8: top-1 agreement under ``min_agreement``, 98%). The
    inputs are ``check`` (faces or a folder) when given; else, for a FER2013 calibration folder
    (``.../train``), 1,000 PublicTest faces of its ``test`` sibling (model selection data, never
    calibrated on); else 256 other faces of the calibration folder; else the calibration faces;
    else 64 random inputs. The numbers are kept in the returned path's ``.verification``.
    """
    if str(path).lower().endswith(".safetensors"):
        raise FerlabError(f"output {path} should end in .onnx")
    checkpoint = _as_checkpoint(checkpoint_or_name)
    folder = calibration if isinstance(calibration, (str, os.PathLike)) else None
    if folder is not None:
        calibration = load_calibration_faces(folder, calibration_count, seed=0) if int8 else None
    data = export_bytes(checkpoint, opset)
    if int8:
        if calibration is None or not len(calibration):
            raise FerlabError("INT8 export needs calibration faces (--calib DIR with face images)")
        data = quantize_int8(data, normalise_faces(calibration, checkpoint.mean, checkpoint.std))
    result = None
    if verify:
        # real faces when there are some (INT8 must be judged on them: on random inputs even a
        # good quantisation flips many near-ties); faces other than the calibration ones if possible
        faces, what = _check_faces(check, folder, calibration)
        inputs = normalise_faces(faces, checkpoint.mean, checkpoint.std) if faces is not None else None
        result = verify_onnx(data, checkpoint, inputs, what=what)
        if not int8 and result.max_prob_diff > FP32_MAX_PROB_DIFF:
            raise FerlabError(f"the exported model disagrees with the PyTorch model ({result}); "
                              f"nothing written to {path}")
        if int8 and result.top1_agreement < min_agreement:
            raise FerlabError(f"INT8 model refused: it picks the fp32 model's class on only "
                              f"{result.top1_agreement * 100:.1f}% of {result.inputs} {result.what or 'inputs'} "
                              f"(needs >= {min_agreement * 100:.0f}%); nothing written to {path}")
    write_bytes(path, data)
    out = OnnxExport(path)
    out.verification, out.int8, out.opset = result, int8, opset
    return out


def publictest_folder(calibration_folder: str | os.PathLike[str]) -> Path | None:
    """FER2013's PublicTest faces beside a calibration folder (``.../train`` ->
    ``.../test`` holding ``PublicTest_*`` files, as the Kaggle image-folder copy ships), or None."""
    root = Path(calibration_folder)
    for cand in (root.parent / "test", root.parent / "val", root.parent / "PublicTest"):
        if cand.is_dir() and cand.resolve() != root.resolve() and next(cand.rglob("PublicTest_*"), None) is not None:
            return cand
    return None


def _check_faces(check: Any, folder: Any, calibration: Any) -> tuple[np.ndarray | None, str | None]:
    if check is not None:
        if isinstance(check, (str, os.PathLike)):
            return load_calibration_faces(check, CHECK_COUNT, seed=1, balanced=False), f"faces of {Path(check).name}/"
        return np.asarray(check), "check faces"
    if folder is not None:
        public = publictest_folder(folder)
        if public is not None:
            return (load_calibration_faces(public, CHECK_COUNT, seed=1, prefix="PublicTest_", balanced=False),
                    "PublicTest faces")
        return load_calibration_faces(folder, 256, seed=1), "other calibration-folder faces"
    if calibration is not None:
        return np.asarray(calibration), "calibration faces"
    return None, None


def verify_onnx(onnx_model: bytes | str | os.PathLike[str], checkpoint: Any,
                inputs: np.ndarray | None = None, count: int = 64, what: str | None = None) -> Verification:
    """Compare an ONNX model with the checkpoint's PyTorch model on ``inputs`` (normalised
    N x 1 x 48 x 48; default ``count`` random normal ones)."""
    from ..probabilities import softmax
    from .backends import OnnxBackend, TorchBackend

    real = inputs is not None
    if inputs is None:
        inputs = np.random.default_rng(0).standard_normal((count, 1, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    ref = TorchBackend(checkpoint.model)(inputs)
    got = OnnxBackend(onnx_model)(inputs)
    return Verification(len(inputs), real, float((ref.argmax(1) == got.argmax(1)).mean()),
                        float(np.abs(softmax(ref) - softmax(got)).max()), what)


def _as_checkpoint(spec: Any) -> Any:
    if hasattr(spec, "model") and hasattr(spec, "meta"):
        return spec
    from ..research.nets.checkpoint import load_checkpoint
    from ..models.hub import resolve_model

    return load_checkpoint(resolve_model(spec))


def normalise_faces(faces_u8: np.ndarray, mean: float, std: float) -> np.ndarray:
    return faces_to_input(np.asarray(faces_u8, np.uint8), mean, std)


def load_calibration_faces(folder: str | os.PathLike[str], count: int = 300, seed: int = 0,
                           prefix: str | None = None, balanced: bool = True) -> np.ndarray:
    """``count`` face images from a folder tree (e.g. FER2013's ``train/``), evenly over its
    sub-folders (classes) and random within them, as (N, 48, 48) uint8 grayscale. ``prefix``:
    only files whose name starts with it (``"PublicTest_"``). ``balanced=False``: a plain
    random sample, with the classes as frequent as in the folder (what agreement is judged on)."""
    import cv2

    from .preprocess import IMAGE_EXTS

    root = Path(folder)
    if not root.is_dir():
        raise FerlabError(f"calibration folder not found: {root}")
    groups: dict[Path, list[Path]] = {}
    for p in root.rglob("*"):
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS and (prefix is None or p.name.startswith(prefix)):
            groups.setdefault(p.parent, []).append(p)
    if not groups:
        raise FerlabError(f"no face images{f' named {prefix}*' if prefix else ''} found under folder {root}")
    rng = np.random.default_rng(seed)
    per = max(1, -(-count // len(groups))) if balanced else count
    chosen: list[Path] = []
    for _, files in sorted(groups.items()):
        files.sort()
        chosen += [files[i] for i in rng.permutation(len(files))[:per]]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))[:count]]
    faces = []
    for p in chosen:
        img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        if img is None:
            continue
        faces.append(resize_face(img))
    if not faces:
        raise FerlabError(f"none of the images under {root} could be read")
    return np.stack(faces)


