"""From any image a user can hand us to 8-bit BGR and grayscale frames, and face boxes clipped
to them.

Every entry point (photo, video frame, browser frame) goes through these functions, so a
16-bit PNG, a BGRA screenshot or a float array reach the detector the same way; the step from
a box to model input (crop, resize, Eq. 27) is :mod:`ferlab.preprocessing`.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import FerlabError
# Crop, resize rule and Eq. (27) have one home, ferlab.preprocessing; re-exported here for
# code written against earlier versions.
from ..preprocessing import crop_face, make_batch, normalise  # noqa: F401

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".jp2"}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Bring 16-bit and float images to 8 bits, the range the detector and model expect."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)  # full 16-bit range -> 0..255
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.size and float(finite.max()) <= 1.0 else 1.0  # [0,1] floats
        return np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer) or image.dtype == np.bool_:
        return np.clip(image, 0, 255).astype(np.uint8)
    raise FerlabError(f"unsupported image dtype {image.dtype}")


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Gray, BGR or BGRA (OpenCV's order), any bit depth -> 8-bit 3-channel BGR.

    Alpha is dropped rather than composited: faces in PNG screenshots/avatars are opaque, and
    compositing on a colour would invent pixels the model never saw.
    """
    if not isinstance(image, np.ndarray):
        raise FerlabError(f"expected an image array, got {type(image).__name__}")
    image = to_uint8(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise FerlabError(f"unsupported image shape {image.shape}: expected HxW, HxWx3 or HxWx4")


def to_gray(image: np.ndarray) -> np.ndarray:
    """8-bit grayscale, as Algorithm 1 line 5 (``cvtColor(F, BGR2GRAY)``)."""
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise FerlabError(f"unsupported image shape {image.shape}: expected HxW, HxWx3 or HxWx4")


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo as 8-bit BGR, or fail with a message naming it."""
    p = Path(path)
    if not p.exists():
        raise FerlabError(f"image not found: {p}")
    if p.is_dir():
        raise FerlabError(f"{p} is a folder, not an image")
    try:
        # imdecode instead of imread: imread silently returns None for unicode paths on Windows
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise FerlabError(f"cannot read image {p}: {exc.strerror or exc}") from None
    return decode_image_bytes(data, str(p))


def decode_image_bytes(data: bytes | np.ndarray, name: str) -> np.ndarray:
    """Encoded image bytes -> 8-bit BGR, or fail with a message naming ``name``."""
    data = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    # IMREAD_COLOR: one decode that applies EXIF orientation (phones store rotated JPEGs),
    # drops alpha and brings 16-bit and gray files to 8-bit BGR, the form everything below uses.
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as exc:  # e.g. over OpenCV's pixel limit (CV_IO_MAX_IMAGE_PIXELS)
        raise FerlabError(f"cannot decode image {name}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None or image.size == 0:
        raise FerlabError(f"{name} is not a readable image (empty, truncated or not an image format)")
    return image


def clip_boxes(boxes: np.ndarray, width: int, height: int, min_side: int = 2) -> np.ndarray:
    """Clip (x, y, w, h) boxes to the frame; drop ones with less than ``min_side`` px inside."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if not len(boxes):
        return boxes.astype(np.int32)
    x0 = np.clip(boxes[:, 0], 0, width)
    y0 = np.clip(boxes[:, 1], 0, height)
    x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
    y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    return out[(out[:, 2] >= min_side) & (out[:, 3] >= min_side)].astype(np.int32)


def list_images(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders (recursively, sorted) into image files; explicit files are kept as given
    so a wrong one gets a clear error instead of being silently skipped."""
    out: list[Path] = []
    for item in paths:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_EXTS)
            if not found:
                raise FerlabError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in folder {p}")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise FerlabError(f"image not found: {p}")
    return out
