"""The one definition of how a face becomes model input: crop, resize rule, Eq. (27).

A model is only as good as the agreement between the pixels it was trained on and the pixels
it is shown later. Training (on-device batches), checkpoint selection, ``ferlab evaluate``,
the live ``Recognizer``, ONNX export/calibration, Grad-CAM and the benchmarks therefore all
call the functions here instead of writing ``(x / 255 - mean) / std`` or a resize themselves.

The normalisation functions work on NumPy arrays and on PyTorch tensors alike (by duck
typing, so this module never imports PyTorch and the light install can use it). Both run the
same float32 operations in the same order: scale to [0, 1] first, then subtract the mean,
then divide by the standard deviation, so NumPy and PyTorch results agree bit for bit.
"""
from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from .constants import IMAGE_SIZE

ArrayT = TypeVar("ArrayT")


# -- resize rule ------------------------------------------------------------------------------

def resize_interpolation(width: int, height: int, size: int = IMAGE_SIZE) -> int:
    """OpenCV interpolation for bringing a ``width`` x ``height`` crop to ``size`` x ``size``.

    INTER_AREA when both sides shrink (pixel averaging, no aliasing: how the 48x48 FER2013
    faces were made); linear when any side grows, where INTER_AREA degenerates to
    nearest-neighbour. Also baked into the ONNX export's documentation and calibration.
    """
    import cv2

    return cv2.INTER_AREA if (width >= size and height >= size) else cv2.INTER_LINEAR


def resize_face(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A grayscale face image of any size -> ``size`` x ``size`` uint8 by the rule above."""
    import cv2

    h, w = image.shape[:2]
    if (w, h) == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=resize_interpolation(w, h, size))


def crop_face(gray: np.ndarray, box: Any, size: int = IMAGE_SIZE) -> np.ndarray:
    """Crop an (x, y, w, h) box, already clipped to the frame, and resize it to ``size``."""
    x, y, w, h = (int(v) for v in box)
    crop = gray[y:y + h, x:x + w]
    if crop.size == 0:
        raise ValueError(f"empty crop for box {(x, y, w, h)}")
    import cv2

    return cv2.resize(crop, (size, size), interpolation=resize_interpolation(w, h, size))


# -- Eq. (27) ---------------------------------------------------------------------------------

def to_unit(x_u8: ArrayT) -> ArrayT:
    """uint8 pixels -> float32 on [0, 1] (a new array/tensor; the input is never modified).

    The training loop augments on this scale (rotation, erasing with U(0, 1) noise) before
    :func:`standardise`; everything else calls :func:`normalise`, which is the two in a row.
    """
    if isinstance(x_u8, np.ndarray):
        out = x_u8.astype(np.float32)
        out /= np.float32(255.0)
        return out  # type: ignore[return-value]
    return x_u8.float().div(255.0)  # type: ignore[attr-defined,no-any-return]


def standardise(x_unit: ArrayT, mean: float, std: float) -> ArrayT:
    """[0, 1] float32 -> ``(x - mean) / std`` with the checkpoint's mean and std (Eq. 27)."""
    if isinstance(x_unit, np.ndarray):
        out = x_unit - np.float32(mean)
        out /= np.float32(std)
        return out  # type: ignore[return-value]
    return x_unit.sub(float(mean)).div(float(std))  # type: ignore[attr-defined,no-any-return]


def normalise(x_u8: ArrayT, mean: float, std: float) -> ArrayT:
    """uint8 pixels -> model input values, Eq. (27). Shape is kept as given."""
    return standardise(to_unit(x_u8), mean, std)


def faces_to_input(faces_u8: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, 48, 48) uint8 faces -> (N, 1, 48, 48) float32 model input (the ONNX layout)."""
    faces = np.asarray(faces_u8)
    if faces.dtype != np.uint8:
        raise TypeError(f"faces must be raw uint8 pixels, got {faces.dtype} (do not normalise twice)")
    return normalise(faces.reshape(-1, faces.shape[-2], faces.shape[-1])[:, None], mean, std)


def crop_faces(gray: np.ndarray, boxes: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """(K, size, size) uint8: :func:`crop_face` of every box (K = 0 gives an empty stack)."""
    if not len(boxes):
        return np.zeros((0, size, size), np.uint8)
    return np.stack([crop_face(gray, b, size) for b in boxes])


def make_batch(gray: np.ndarray, boxes: np.ndarray, mean: float, std: float,
               size: int = IMAGE_SIZE) -> np.ndarray:
    """All faces of a frame as one model batch, so the network runs once per frame."""
    if not len(boxes):
        return np.zeros((0, 1, size, size), np.float32)
    return faces_to_input(crop_faces(gray, boxes, size), mean, std)
