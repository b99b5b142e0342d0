"""Faces and emotions in photos: files and folders in, one record per image out.

``ferlab predict`` is this function plus printing. An image that cannot be read does not stop
the others: its record holds ``error`` instead of ``faces``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import FerlabError
from ..fileio import write_bytes, write_json
from .preprocess import list_images, load_image

PathLike = str | os.PathLike[str]
ANNOTATED_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def predict_images(inputs: PathLike | Iterable[PathLike], recognizer: Any = None, *, out: PathLike | None = None,
                   annotate: PathLike | None = None, on_record: Callable[[dict[str, Any]], None] | None = None,
                   **options: Any) -> list[dict[str, Any]]:
    """One record per image of ``inputs`` (files, or folders searched recursively):
    ``{"file", "width", "height", "faces": [Face.to_dict(), ...]}``, or ``{"file", "error"}``
    for an image that could not be read.

    ``recognizer``: a :class:`~ferlab.inference.Recognizer`, or None to build one from
    ``options`` (:class:`~ferlab.inference.options.InferenceOptions` fields, e.g. ``model``).
    ``out``: also write all records as one JSON list. ``annotate``: a folder for annotated
    copies (same file names; a clash between two input folders gets ``_1``, ``_2``...).
    ``on_record`` is called with each record as soon as it is ready.
    """
    files = list_images([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    if recognizer is None:
        from .recognizer import Recognizer

        recognizer = Recognizer.from_pretrained(**options)
    elif options:
        raise FerlabError(f"options ({', '.join(sorted(options))}) are for building a recognizer; "
                          "one was given")
    records: list[dict[str, Any]] = []
    names: set[str] = set()
    for path in files:
        try:
            image = load_image(path)
            faces = recognizer.predict(image)
        except FerlabError as exc:
            record: dict[str, Any] = {"file": str(path), "error": str(exc)}
        else:
            record = {"file": str(path), "width": int(image.shape[1]), "height": int(image.shape[0]),
                      "faces": [f.to_dict() for f in faces]}
            if annotate is not None:
                _write_annotated(Path(annotate), path, image, faces, names)
        records.append(record)
        if on_record is not None:
            on_record(record)
    if out is not None:
        write_json(out, records)
    return records


def _write_annotated(folder: Path, path: Path, image: Any, faces: list[Any], used: set[str]) -> Path:
    import cv2

    from .overlay import annotate

    folder.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower() if path.suffix.lower() in ANNOTATED_EXTS else ".png"
    name, i = path.stem + ext, 1
    while name in used:  # same file name in two input folders
        name, i = f"{path.stem}_{i}{ext}", i + 1
    used.add(name)
    ok, buf = cv2.imencode(ext, annotate(image, faces))
    if not ok:
        raise FerlabError(f"could not encode annotated image for {path}")
    write_bytes(folder / name, buf.tobytes())
    return folder / name
