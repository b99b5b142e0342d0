"""FER2013 packed into one small file, for the development machines' device calls, which carry
a size-limited copy of the working tree (64 MiB in all) and cannot see the dataset folder.

This is maintainer tooling, not part of ferlab: ``maintainers/scripts/pack_data.py`` packs on the CPU
machine, and on the GPU machine the same script unpacks the file back into FER2013's own format
(:func:`unpack`), which every ferlab command reads. The 35,887 faces are 79 MiB as raw pixels. Generic compressors
barely help (the pixels carry JPEG noise: zlib -4 %, xz -25 % for many minutes of CPU time),
but the Kaggle layout's files are already small JPEGs: storing them verbatim, with the
318-byte JFIF header that every file repeats stored once, is lossless with respect to the
dataset *as distributed* and packs all 35,887 faces into 43.5 MiB (train+PublicTest: 39 MiB).
Unpacking writes those files back byte for byte. Decoding uses the same OpenCV call as
:func:`ferlab.research.data.fer2013.load_fer2013`, and the pack records a hash of the pixels decoded on
the packing machine, so a decoder that rounds differently elsewhere is reported instead of
silently changing the data.

Codecs: ``jpeg`` (folder layout only; smallest), ``xz`` (raw pixels, exact from any source,
slow to pack), ``raw`` (raw pixels in a zip-deflated ``.npz``; fast, largest).

The file is an ordinary ``.npz`` (no pickles): ``np.load(path)`` shows every array.
"""
from __future__ import annotations

import hashlib
import lzma
import os
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferlab.constants import CLASS_NAMES, IMAGE_SIZE
from ferlab.research.data.dataset import SPLITS, USAGES, FerData
from ferlab.research.data.fer2013 import CSV_ORDER
from ferlab.errors import FerlabError

FORMAT = "ferlab-pack-v1"
CODECS = ("jpeg", "xz", "raw")
_SOS = b"\xff\xda"  # JPEG start-of-scan: everything before it is header (tables, sizes)


def pixels_sha1(images: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(images, dtype=np.uint8).tobytes()).hexdigest()


def is_packed(path: str | os.PathLike[str]) -> bool:
    """True for a file written by :func:`pack` (a zip archive named .npz)."""
    p = Path(path)
    if not (p.is_file() and p.suffix == ".npz"):
        return False
    with open(p, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _split_header(blob: bytes, name: str) -> tuple[bytes, bytes]:
    at = blob.find(_SOS)
    if at < 0:
        raise FerlabError(f"{name} is not a baseline JPEG (no start-of-scan marker); pack with --codec xz")
    return blob[:at], blob[at:]


def pack(data: FerData, out: str | os.PathLike[str], *, splits: Sequence[str] = ("train", "val", "test"),
         codec: str = "jpeg", root: str | os.PathLike[str] | None = None) -> dict[str, object]:
    """Write the images of ``splits`` to ``out`` (.npz); returns what was written (sizes, counts).

    ``codec="jpeg"`` re-reads the original files below ``root`` (``data.names`` are relative
    to it), so ``data`` must come from the folder layout.
    """
    if codec not in CODECS:
        raise FerlabError(f"unknown codec {codec!r}; choose one of {', '.join(CODECS)}")
    usages = sorted({u for s in splits for u in SPLITS[s]}) if splits else [0, 1, 2]
    idx = np.flatnonzero(np.isin(data.usage, usages))
    if not len(idx):
        raise FerlabError(f"no images of split(s) {', '.join(splits)} in {data.source}")
    images = np.ascontiguousarray(data.images[idx])
    names = [data.names[i] for i in idx]
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "codec": np.array(codec),
        "labels": data.labels[idx].astype(np.int8), "usage": data.usage[idx].astype(np.int8),
        "names_zlib": np.frombuffer(zlib.compress("\n".join(names).encode(), 9), np.uint8), "pixels_sha1": np.array(pixels_sha1(images)),
        "shape": np.array(images.shape, dtype=np.int64),
    }
    if codec == "jpeg":
        base = Path(root if root is not None else data.source)
        if not base.is_dir():
            raise FerlabError(f"codec jpeg needs the FER2013 folder layout, not {base}; use --codec xz")
        headers: dict[bytes, int] = {}
        header_idx = np.empty(len(names), np.int32)
        bodies: list[bytes] = []
        for i, name in enumerate(names):
            head, body = _split_header((base / name).read_bytes(), name)
            header_idx[i] = headers.setdefault(head, len(headers))
            bodies.append(body)
        lengths = np.fromiter((len(b) for b in bodies), np.int64, len(bodies))
        arrays |= {"jpeg_bodies": np.frombuffer(b"".join(bodies), np.uint8),
                   "jpeg_offsets": np.concatenate([[0], np.cumsum(lengths)]),
                   "jpeg_header_idx": header_idx,
                   "jpeg_headers": np.frombuffer(b"".join(headers), np.uint8),
                   "jpeg_header_offsets": np.concatenate([[0], np.cumsum([len(h) for h in headers])])}
    elif codec == "xz":
        arrays["pixels_xz"] = np.frombuffer(lzma.compress(images.tobytes(), preset=6), np.uint8)
    else:
        arrays["pixels"] = images
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    (np.savez_compressed if codec == "raw" else np.savez)(tmp, **arrays)
    os.replace(tmp, out)
    counts = {USAGES[u]: int((data.usage[idx] == u).sum()) for u in usages}
    return {"path": str(out), "bytes": out.stat().st_size, "images": len(idx), "codec": codec,
            "usage_counts": counts, "distinct_jpeg_headers": len(arrays.get("jpeg_header_offsets", [0])) - 1}


def _decode_jpegs(z: np.lib.npyio.NpzFile) -> np.ndarray:
    import cv2

    bodies, offs = z["jpeg_bodies"], z["jpeg_offsets"]
    heads, hoffs, hidx = z["jpeg_headers"], z["jpeg_header_offsets"], z["jpeg_header_idx"]
    header_list = [heads[hoffs[k]:hoffs[k + 1]] for k in range(len(hoffs) - 1)]
    n = len(hidx)
    out = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), np.uint8)

    def decode(i: int) -> None:
        buf = np.concatenate([header_list[hidx[i]], bodies[offs[i]:offs[i + 1]]])
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
        if img is None or img.shape != (IMAGE_SIZE, IMAGE_SIZE):
            raise FerlabError(f"packed image {i} does not decode to a 48x48 face (corrupt pack?)")
        out[i] = img

    # OpenCV releases the GIL while decoding, so threads scale on the many-core GPU hosts
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(n), chunksize=512))
    return out


def _open(path: Path) -> np.lib.npyio.NpzFile:
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise FerlabError(f"cannot read packed dataset {path}: {exc}") from None
    if "format" not in z.files or str(z["format"]) != FORMAT:
        z.close()
        raise FerlabError(f"{path} is not a ferlab dataset pack (expected format {FORMAT})")
    return z


def load_packed(path: str | os.PathLike[str]) -> FerData:
    """Read a pack back into the same :class:`FerData` that ``load_fer2013`` returns."""
    path = Path(path)
    with _open(path) as z:
        codec = str(z["codec"])
        shape = tuple(int(v) for v in z["shape"])
        if codec == "jpeg":
            images = _decode_jpegs(z)
        elif codec == "xz":
            images = np.frombuffer(lzma.decompress(z["pixels_xz"].tobytes()), np.uint8).reshape(shape)
        elif codec == "raw":
            images = z["pixels"]
        else:
            raise FerlabError(f"{path} uses unknown codec {codec!r}; this script reads {', '.join(CODECS)}")
        want = str(z["pixels_sha1"])
        if pixels_sha1(images) != want:
            warnings.warn(f"{path}: decoded pixels differ from those on the packing machine (another JPEG "
                          f"decoder build); differences are JPEG rounding, but results are not bit-identical",
                          RuntimeWarning, stacklevel=2)
        names = zlib.decompress(z["names_zlib"].tobytes()).decode().split("\n")
        return FerData(images=images, labels=z["labels"].astype(np.int64), usage=z["usage"].astype(np.int8),
                       names=names, source=str(path))


def unpack(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write a pack back as FER2013 in its own format, for ``--data``; returns that path.

    A ``jpeg`` pack becomes the Kaggle folder layout below ``out``, every file byte for byte as
    it was packed (names carry the usage: ``PublicTest_*``/``PrivateTest_*``); an ``xz`` or
    ``raw`` pack becomes ``out/fer2013.csv`` (emotion,pixels,Usage). Either way
    ``load_fer2013`` of the result gives the pack's faces, labels and usages.
    """
    path, out = Path(path), Path(out)
    with _open(path) as z:
        codec = str(z["codec"])
        names = zlib.decompress(z["names_zlib"].tobytes()).decode().split("\n")
        if codec == "jpeg":
            bodies, offs = z["jpeg_bodies"], z["jpeg_offsets"]
            heads, hoffs, hidx = z["jpeg_headers"], z["jpeg_header_offsets"], z["jpeg_header_idx"]
            for i, name in enumerate(names):
                target = out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                k = hidx[i]
                target.write_bytes(heads[hoffs[k]:hoffs[k + 1]].tobytes() + bodies[offs[i]:offs[i + 1]].tobytes())
            return out
    data = load_packed(path)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "fer2013.csv"
    emotion = [CSV_ORDER.index(CLASS_NAMES[c]) for c in range(len(CLASS_NAMES))]
    with open(csv_path, "w", encoding="utf-8") as fh:
        fh.write("emotion,pixels,Usage\n")
        for img, label, usage in zip(data.images, data.labels, data.usage):
            fh.write(f"{emotion[int(label)]},{' '.join(map(str, img.ravel().tolist()))},{USAGES[int(usage)]}\n")
    return csv_path
