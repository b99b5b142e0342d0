"""``ferlab gradcam``: Grad-CAM overlays for face crops and for whole photos.

A 48x48 image is taken to be a FER2013-style face crop as is; anything larger is a photo whose
faces are found with the same detector and cropped with the same code as live inference
(:mod:`ferlab.inference`), so the map explains exactly the input the model sees in use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ...constants import IMAGE_SIZE
from ...errors import FerlabError
from ...inference.preprocess import crop_faces, normalise
from ...fileio import write_bytes, write_json
from .gradcam import gradcam_maps, normalise_max

PANEL = 192  # 4x the 48 px face: big enough to see which feature lights up
CAPTION_H = 26


def resolve_target(target: str | None, class_names: list[str]) -> int | None:
    """``None``/``"predicted"`` -> explain each face's predicted class; else a class name."""
    if target is None or target == "predicted":
        return None
    lowered = [c.lower() for c in class_names]
    if target.lower() not in lowered:
        raise FerlabError(f"unknown class {target!r}; choose one of {', '.join(class_names)}")
    return lowered.index(target.lower())


def heat_bgr(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Max-normalised map -> JET colour image of ``size`` (w, h), uint8 BGR."""
    m = cv2.resize(normalise_max(cam).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)


def _caption(width: int, text: str) -> np.ndarray:
    strip = np.full((CAPTION_H, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (6, CAPTION_H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def side_by_side(face_u8: np.ndarray, cam: np.ndarray, caption: str, alpha: float = 0.5) -> np.ndarray:
    """[face | face with heatmap], enlarged, with a caption strip on top."""
    face = cv2.cvtColor(cv2.resize(face_u8, (PANEL, PANEL), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    overlay = cv2.addWeighted(face, 1 - alpha, heat_bgr(cam, (PANEL, PANEL)), alpha, 0)
    gap = np.full((PANEL, 4, 3), 255, np.uint8)
    body = np.hstack([face, gap, overlay])
    return np.vstack([_caption(body.shape[1], caption), body])


def photo_overlay(bgr: np.ndarray, boxes: np.ndarray, cams: np.ndarray, labels: list[str],
                  alpha: float = 0.45) -> np.ndarray:
    """The photo with each face's heatmap blended into its box, plus box and label."""
    out = bgr.copy()
    thick = max(1, round(max(out.shape[:2]) / 500))
    for (x, y, w, h), cam, text in zip(boxes, cams, labels):
        roi = out[y:y + h, x:x + w]
        out[y:y + h, x:x + w] = cv2.addWeighted(roi, 1 - alpha, heat_bgr(cam, (w, h)), alpha, 0)
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), (255, 255, 255), thick)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, thick)
        tx = int(min(max(0, x), max(0, out.shape[1] - tw)))  # keep labels of edge faces inside
        ty = int(y) - 6 if y - 6 >= th else int(y + h) + th + 4
        cv2.putText(out, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise FerlabError(f"could not encode {path}")
    write_bytes(path, buf.tobytes())


def _unique(stem: str, used: set[str]) -> str:
    """Two inputs with the same file name (in different folders) must not overwrite each other."""
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}-{k}"
    used.add(name)
    return name


def gradcam(inputs: list[str | os.PathLike[str]] | str | os.PathLike[str], model: Any = None, *,
            target: str | None = None, out: str | os.PathLike[str] = "runs/gradcam", crops: bool = False,
            device: str | None = "auto") -> list[dict[str, Any]]:
    """Explain every face in ``inputs`` (files or folders); write overlays to ``out``.

    ``target``: a class name, or None for each face's predicted class. ``crops=True`` treats
    every image as a face crop (resized to 48x48) instead of detecting faces in images that are
    not 48x48. Returns one record per face (file, box, prediction, explained class, output).
    """
    from ..device import resolve_device
    from ...models.hub import resolve_model
    from ...inference.detector import make_detector
    from ...inference.preprocess import clip_boxes, list_images, load_image, to_gray
    from ..nets.checkpoint import load_checkpoint

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = list_images(list(inputs))
    device = str(resolve_device(device))
    ckpt = load_checkpoint(resolve_model(model), map_location=device)
    names = ckpt.class_names
    tgt = resolve_target(target, names)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = None
    used: set[str] = set()
    records: list[dict[str, Any]] = []
    for f in files:
        bgr = load_image(f)
        gray = to_gray(bgr)
        is_crop = crops or gray.shape == (IMAGE_SIZE, IMAGE_SIZE)
        if is_crop:
            boxes = np.array([[0, 0, gray.shape[1], gray.shape[0]]], np.int32)
        else:
            detector = detector or make_detector("haar")  # thesis settings: 1.1, 5, 30x30
            boxes = clip_boxes(detector.detect(bgr, gray), gray.shape[1], gray.shape[0])
        stem = _unique(f.stem, used)
        if not len(boxes):
            records.append({"image": str(f), "face": None, "error": "no face found"})
            continue
        faces = crop_faces(gray, boxes)
        x = normalise(torch.from_numpy(faces)[:, None], ckpt.mean, ckpt.std)
        cams, probs = gradcam_maps(ckpt.model, x, tgt)
        texts = []
        for i, (face, cam, p) in enumerate(zip(faces, cams, probs)):
            pred = int(p.argmax())
            ex = pred if tgt is None else tgt
            caption = f"{names[pred]} {p[pred]:.0%}" + ("" if ex == pred else f" | CAM: {names[ex]}")
            texts.append(caption)
            face_path = out_dir / (f"{stem}_gradcam.png" if is_crop else f"{stem}_face{i}_gradcam.png")
            _write_png(face_path, side_by_side(face, cam, caption))
            records.append({"image": str(f), "face": i, "box": [int(v) for v in boxes[i]],
                            "predicted": names[pred], "confidence": round(float(p[pred]), 4),
                            "explained": names[ex], "probs": {n: round(float(v), 4) for n, v in zip(names, p)},
                            "out": str(face_path)})
        if not is_crop:
            photo_path = out_dir / f"{stem}_gradcam.png"
            _write_png(photo_path, photo_overlay(bgr, boxes, cams, texts))
            for r in records[-len(boxes):]:
                r["photo_out"] = str(photo_path)
    write_json(out_dir / "gradcam.json", records)
    return records
