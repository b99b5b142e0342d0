"""``ferlab.analyze(image)``: the one call for a photo, as short as the peers' one call.

``fer``'s ``FER().detect_emotions(img)`` and deepface's ``DeepFace.analyze(img)`` return plain
records; so does this, with ferlab's extras (the model's own judgement of whether a face can be
read at all). The recognizer behind it is built once per model and options and then reused, so
calling ``analyze`` in a loop costs what ``Recognizer.predict`` costs. For video and cameras,
where tracking and smoothing matter, use :class:`ferlab.Recognizer` and its ``stream``.
"""
from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from .errors import FerlabError

URL_SCHEMES = ("http://", "https://")
MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024  # the web server's upload limit: a photo, not an archive
DOWNLOAD_TIMEOUT_S = 30.0

_cache: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


def _recognizer(model: str | os.PathLike[str] | None, options: dict[str, Any]) -> Any:
    from .inference.recognizer import Recognizer

    key = (None if model is None else str(model), tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _lock:
        if key not in _cache:
            if len(_cache) >= 4:  # a script that tries many models should not keep them all
                _cache.clear()
            _cache[key] = Recognizer.from_pretrained(model, **options)
        return _cache[key]


def fetch_url(url: str, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The bytes at ``url``, at most ``max_bytes``; one clear error otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - http(s) only, checked by the caller
            data = resp.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FerlabError(f"cannot download {url}: {reason}") from None
    if len(data) > max_bytes:
        raise FerlabError(f"{url} is larger than {max_bytes // (1024 * 1024)} MB; download it and pass the file")
    return data


def load_any(image: Any) -> np.ndarray:
    """A path, an ``http(s)://`` URL, encoded bytes or an array -> the array the pipeline takes."""
    from .inference.preprocess import decode_image_bytes, load_image

    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(image), "image bytes")
    if isinstance(image, str) and image.lower().startswith(URL_SCHEMES):
        return decode_image_bytes(fetch_url(image), image)
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    raise FerlabError(f"analyze() takes a path, URL, bytes or numpy array, not {type(image).__name__}")


def analyze(image: Any, model: str | os.PathLike[str] | None = None, **options: Any) -> list[dict[str, Any]]:
    """Every face in one photo, left to right, as plain records::

        [{"box": [x, y, w, h], "emotions": {"angry": 0.01, ..., "surprise": 0.02},
          "dominant": "happy", "uncertain": False, "uncertainty": 0.12}]

    ``image``: a file path, an ``http(s)://`` URL, encoded image bytes, or a numpy array (BGR as
    OpenCV reads it, or gray). ``model``: ``"fer2013"`` (default), ``"ferplus"``, a checkpoint or
    an ``.onnx`` file. ``options``: those of :class:`ferlab.Recognizer` (e.g. ``detector="haar"``,
    ``tta="flip"``). ``uncertain`` is True when the model's calibrated confidence says the face
    cannot be read reliably (None for a model without a calibration). A face found only with the
    photo turned (a sideways photo without an EXIF orientation tag) also has ``"rotation"``: the
    degrees the photo was turned clockwise to read it; its box is in the photo's own pixels.
    """
    faces = _recognizer(model, options).predict(load_any(image))
    return [{"box": [int(v) for v in f.box],
             "emotions": {str(n): round(float(p), 6) for n, p in zip(f.class_names, f.probs)},
             "dominant": f.label,
             "uncertain": None if f.uncertain is None else bool(f.uncertain),
             "uncertainty": None if f.uncertainty is None else round(float(f.uncertainty), 6),
             **({"rotation": f.rotation} if f.rotation else {})}
            for f in faces]
