"""FER2013 in either public format, decoded once into a compact uint8 array.

Two layouts exist in the wild: the original ``fer2013.csv`` (emotion,pixels,Usage) and the
Kaggle image folders ``{train,test}/<class>/*.jpg``. Both become the same :class:`FerData`:
all 35,887 faces as one (N, 48, 48) uint8 array (66 MB) plus labels and the original
``Usage`` of every image, so the standard protocol (select on PublicTest, report PrivateTest)
works from either. Decoding JPEGs takes ~10 s; the result is cached as ``.npy`` files and
later loads are memory-maps that take milliseconds.
"""
from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...constants import CLASS_NAMES, IMAGE_SIZE
from ...errors import FerlabError
from ...fileio import write_with
from .dataset import USAGES, FerData

# The original CSV numbers classes in this order (Goodfellow et al. 2013).
CSV_ORDER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


# ----------------------------------------------------------------------------- loading

def load_fer2013(root: str | os.PathLike[str], *, skip_bad: bool = False,
                 cache: bool = True, cache_dir: str | os.PathLike[str] | None = None) -> FerData:
    """Load FER2013 from a folder layout or a CSV file; cached after the first decode."""
    root = Path(root).expanduser()
    if not root.exists():
        raise FerlabError(f"data path not found: {root} (expected fer2013.csv or a folder with train/ and test/)")
    if root.is_dir() and (root / "fer2013.csv").is_file() and not (root / "train").is_dir():
        root = root / "fer2013.csv"
    key = _fingerprint(root)
    cdir = Path(cache_dir or os.environ.get("FERLAB_CACHE", Path.home() / ".cache" / "ferlab")) / key
    if cache and (cdir / "labels.npy").is_file():
        data = _load_cache(cdir, str(root))
        if data.skipped and not skip_bad:
            # The cache was written by a --skip-bad load; without the flag the answer must be
            # the same error as decoding would give, not a silently smaller dataset.
            more = f" and {len(data.skipped) - 1} more" if len(data.skipped) > 1 else ""
            raise FerlabError(f"{data.skipped[0]}{more} (use --skip-bad to skip such images)")
        return data
    data = _read_csv(root, skip_bad) if root.is_file() else _read_folders(root, skip_bad)
    if cache:
        try:
            _save_cache(cdir, data)
        except OSError:
            pass  # a read-only home must not stop training
    return data


def _fingerprint(root: Path) -> str:
    """Names + sizes + mtimes of every input file: a changed dataset never hits a stale cache."""
    h = hashlib.sha1(str(root.resolve()).encode())
    if root.is_file():
        st = root.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
            for fn in sorted(f for f in filenames if not _hidden(f)):
                st = os.stat(os.path.join(dirpath, fn))
                h.update(f"{dirpath}/{fn}:{st.st_size}:{st.st_mtime_ns};".encode())
    return "v2-" + h.hexdigest()[:16]  # v2: the cache also records skipped files


def _save_cache(cdir: Path, data: FerData) -> None:
    cdir.mkdir(parents=True, exist_ok=True)
    for name, arr in (("images", data.images), ("usage", data.usage)):
        write_with(cdir / f"{name}.npy", lambda p, a=arr: np.save(open(p, "wb"), a))
    write_with(cdir / "names.txt", lambda p: Path(p).write_text("\n".join(data.names)))
    write_with(cdir / "skipped.txt", lambda p: Path(p).write_text("\n".join(data.skipped)))
    # labels last: its presence marks a complete cache
    write_with(cdir / "labels.npy", lambda p: np.save(open(p, "wb"), data.labels))


def _load_cache(cdir: Path, source: str) -> FerData:
    return FerData(
        images=np.load(cdir / "images.npy", mmap_mode="r"),
        labels=np.load(cdir / "labels.npy"),
        usage=np.load(cdir / "usage.npy"),
        names=(cdir / "names.txt").read_text().split("\n"),
        source=source,
        skipped=[line for line in _read_lines(cdir / "skipped.txt") if line],
    )


def _read_lines(path: Path) -> list[str]:
    return path.read_text().split("\n") if path.is_file() else []


def _bad(msg: str, skip_bad: bool, skipped: list[str]) -> None:
    if not skip_bad:
        raise FerlabError(msg + " (use --skip-bad to skip such images)")
    skipped.append(msg)


def _hidden(name: str) -> bool:
    """Dot-files and OS metadata (``.DS_Store``, macOS ``._x.jpg`` forks, ``__MACOSX``,
    ``.ipynb_checkpoints``) are never data; treating them as images would fail for no reason."""
    return name.startswith(".") or name in ("__MACOSX", "Thumbs.db", "desktop.ini")


def _read_folders(root: Path, skip_bad: bool) -> FerData:
    import cv2  # local: importing OpenCV costs ~0.2 s, and cached loads never need it

    split_dirs = [d for d in ("train", "test") if (root / d).is_dir()]
    if "train" not in split_dirs:
        if any((root / c).is_dir() for c in CLASS_NAMES):
            raise FerlabError(f"{root} holds class folders directly; give the folder above it, "
                              f"the one that holds train/ and test/")
        raise FerlabError(f"{root} has no train/ folder: expected {root}/train/<class>/*.jpg "
                          f"(Kaggle layout) or a fer2013.csv file")
    images, labels, usage, names, skipped = [], [], [], [], []
    for split in split_dirs:
        entries = sorted(p for p in (root / split).iterdir() if not _hidden(p.name))
        loose = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if loose:
            raise FerlabError(f"image {loose[0]} lies directly in {split}/: every image must be in a "
                              f"class folder, {root}/{split}/<class>/ with <class> one of "
                              f"{', '.join(CLASS_NAMES)}")
        for cdir in (p for p in entries if p.is_dir()):
            cname = cdir.name.lower()
            if cname not in CLASS_NAMES:
                n = sum(1 for f in cdir.iterdir() if f.suffix.lower() in IMAGE_EXTS)
                _bad(f"unknown class folder {cdir} ({n} images; expected one of {', '.join(CLASS_NAMES)})",
                     skip_bad, skipped)
                continue
            label = CLASS_NAMES.index(cname)
            for f in sorted(cdir.iterdir()):
                if _hidden(f.name) or f.suffix.lower() not in IMAGE_EXTS:
                    continue
                try:
                    buf = np.fromfile(f, dtype=np.uint8)
                except OSError as exc:
                    _bad(f"cannot read image {f}: {exc.strerror}", skip_bad, skipped)
                    continue
                img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if buf.size else None
                if img is None:
                    _bad(f"unreadable or corrupt image: {f}", skip_bad, skipped)
                    continue
                if img.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    _bad(f"image {f} is {img.shape[1]}x{img.shape[0]}, expected 48x48", skip_bad, skipped)
                    continue
                images.append(img)
                labels.append(label)
                usage.append(_usage_of(f.name, split))
                names.append(f"{split}/{cname}/{f.name}")
    if not images:
        raise FerlabError(f"no images found under {root}/train/<class>/")
    usage_arr = np.asarray(usage, dtype=np.int8)
    if (usage_arr == -1).any():
        # test/ files without PublicTest_/PrivateTest_ names: split them deterministically
        # in half so that a validation split distinct from the reported test split exists.
        idx = np.flatnonzero(usage_arr == -1)
        rng = np.random.default_rng(0)
        perm = rng.permutation(idx)
        usage_arr[perm[: len(perm) // 2]] = 1
        usage_arr[perm[len(perm) // 2:]] = 2
    return FerData(np.stack(images), np.asarray(labels, dtype=np.int64), usage_arr, names,
                   source=str(root), skipped=skipped)


def _usage_of(filename: str, split: str) -> int:
    if split == "train":
        return 0
    for i, u in enumerate(USAGES):
        if filename.startswith(u):
            return i
    return -1


def _rows(reader: csv.DictReader, path: Path) -> Iterator[dict[str, str]]:
    """Stream the rows (the real CSV is 290 MB) but turn a binary or broken file into a
    FerlabError instead of a traceback."""
    try:
        yield from reader
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FerlabError(f"{path} is not a readable CSV file: {exc}") from None


def _read_csv(path: Path, skip_bad: bool) -> FerData:
    images, labels, usage, names, skipped = [], [], [], [], []
    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise FerlabError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        reader = csv.DictReader(fh)
        need = {"emotion", "pixels", "Usage"}
        try:
            fieldnames = reader.fieldnames
        except (UnicodeDecodeError, csv.Error):
            fieldnames = None
        if fieldnames is None or not need <= set(fieldnames):
            raise FerlabError(f"{path} is not a FER2013 CSV: expected columns emotion,pixels,Usage, "
                              f"found {fieldnames}")
        for row_no, row in enumerate(_rows(reader, path), start=2):
            where = f"{path} line {row_no}"
            try:
                emo = int(row["emotion"])
                if not 0 <= emo < len(CSV_ORDER):
                    raise ValueError
            except (TypeError, ValueError):
                _bad(f"{where}: emotion {row['emotion']!r} is not an integer 0-6", skip_bad, skipped)
                continue
            try:
                px = np.array(row["pixels"].split(), dtype=np.int64)
            except (AttributeError, ValueError):
                _bad(f"{where}: pixels are not integers", skip_bad, skipped)
                continue
            if px.size != IMAGE_SIZE * IMAGE_SIZE:
                _bad(f"{where}: expected {IMAGE_SIZE * IMAGE_SIZE} pixel values (48x48), found {px.size}",
                     skip_bad, skipped)
                continue
            if px.min() < 0 or px.max() > 255:
                _bad(f"{where}: pixel values must lie in 0-255, found {px.min()}..{px.max()}", skip_bad, skipped)
                continue
            if row["Usage"] not in USAGES:
                _bad(f"{where}: Usage {row['Usage']!r} is not one of {', '.join(USAGES)}", skip_bad, skipped)
                continue
            images.append(px.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            labels.append(CLASS_NAMES.index(CSV_ORDER[emo]))
            usage.append(USAGES.index(row["Usage"]))
            names.append(f"row{row_no - 2}")
    if not images:
        raise FerlabError(f"no usable rows in {path}")
    return FerData(np.stack(images), np.asarray(labels, dtype=np.int64),
                   np.asarray(usage, dtype=np.int8), names, source=str(path), skipped=skipped)
