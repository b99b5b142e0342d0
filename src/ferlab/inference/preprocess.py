"""How any image a user can hand us becomes model input: one module, used by every entry
point and by the research kit alike.

*Images to frames.* Every entry point (photo, video frame, browser frame, batch task) reads and
converts images here, so a 16-bit PNG, a BGRA screenshot or a float array reach the detector
the same way (8-bit BGR and grayscale), and every image's size is checked from its header
before it is decoded. Face boxes are clipped to the frame here too.

*Faces to model input: crop, resize rule, Eq. (27).* A model is only as good as the agreement
between the pixels it was trained on and the pixels it is shown later. Training (on-device
batches), checkpoint selection, ``ferlab evaluate``, the ``Recognizer``, ONNX export and
calibration, Grad-CAM and the benchmarks therefore all call :func:`crop_faces`,
:func:`normalise` and friends instead of writing ``(x / 255 - mean) / std`` or a resize
themselves. The normalisation functions work on NumPy arrays and on PyTorch tensors alike (by
duck typing, so this module never imports PyTorch and the core install can use it). Both run
the same float32 operations in the same order: scale to [0, 1] first, then subtract the mean,
then divide by the standard deviation, so NumPy and PyTorch results agree bit for bit.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from ..constants import IMAGE_SIZE
from ..errors import FerlabError

ArrayT = TypeVar("ArrayT")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".jp2"}

DEFAULT_MAX_PIXELS = 50_000_000
"""The largest image decoded anywhere (CLI, batch, server, Python API): 50 Mpx is a 8660x5773
photo, more than any phone or DSLR takes, and its 8-bit BGR copy is 150 MB. A PNG of under
1 MB can declare 30000x30000 pixels (2.7 GB once decoded), so the size is read from the header
and checked before OpenCV allocates anything."""
MAX_PIXELS_ENV = "FERLAB_MAX_PIXELS"
# Only the formats of IMAGE_EXTS, all of which OpenCV decodes: a format Pillow cannot size is
# never handed to OpenCV, whose decoders would otherwise allocate whatever a header declares.
_HEADER_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "PPM", "JPEG2000")
_FORMAT_NAMES = "JPEG, PNG, WebP, BMP, TIFF, PGM/PPM or JPEG 2000"
_BYTES_PER_PIXEL_MAX = 8  # 16-bit RGBA, the widest uncompressed pixel OpenCV reads
_PIL_LOCK = threading.Lock()  # warnings.catch_warnings is process-wide state
QUIET_CODECS = False
"""Set by the ``ferlab`` command (:func:`ferlab.cli.main`): libpng and libjpeg print their own
complaints ("libpng error: IDAT: CRC error", "Corrupt JPEG data: ...") straight to the
process's stderr, beside ferlab's one line about the same file; the command hides them while
it decodes in its main thread. Off for library use, where stderr is the caller's."""


class ImageTooLarge(FerlabError):
    """An image whose header declares more pixels than the limit: refused before decoding
    (the server answers 413 for it, every command exits with one line)."""


def max_image_pixels() -> int:
    """The pixel limit: ``$FERLAB_MAX_PIXELS`` when set (a positive integer), else 50 Mpx."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise FerlabError(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive pixel count "
                          "(e.g. 50000000)")
    return value


def header_pixels(source: bytes | str | os.PathLike[str]) -> tuple[int, tuple[int, int] | None]:
    """(pixel count, (width, height)) as the image's header declares them, read by Pillow
    without decoding any pixel data (Pillow only parses headers on open; it is already
    installed with matplotlib, and its parsers are fuzzed upstream, unlike one we would write
    for TIFF's IFDs or JPEG 2000 boxes). ``(width, height)`` is None only if a header over
    Pillow's own bomb guard (179 Mpx) cannot be sized another way; the count then comes from
    Pillow's message.

    Raises FerlabError when no supported format's header can be read (not an image, or a
    format outside ``IMAGE_EXTS``); OSError when a file cannot be read at all."""
    from PIL import Image, UnidentifiedImageError

    with contextlib.ExitStack() as stack:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else stack.enter_context(open(source, "rb"))
        try:
            with _PIL_LOCK, warnings.catch_warnings():
                # only the size is wanted here: Pillow's warnings (its bomb warning over 89 Mpx,
                # "Corrupt EXIF data" from a damaged TIFF) would be extra lines of output
                warnings.simplefilter("ignore")
                try:
                    with Image.open(fp, formats=_HEADER_FORMATS) as im:
                        w, h = (int(v) for v in im.size)
                        return w * h, (w, h)
                except Image.DecompressionBombError as exc:  # over 2 x Image.MAX_IMAGE_PIXELS
                    size = _size_past_pillow_guard(fp)
                    if size is not None:
                        return size[0] * size[1], size
                    m = re.search(r"\((\d+) pixels\)", str(exc))
                    return (int(m.group(1)) if m else 2 * int(Image.MAX_IMAGE_PIXELS or 0) + 1), None
        except OSError as exc:
            if not isinstance(exc, UnidentifiedImageError) and exc.errno is not None:
                raise  # the file itself could not be read: the caller names it
            raise FerlabError(f"not a readable image: no {_FORMAT_NAMES} header, or a damaged one") from None
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - SyntaxError, struct.error, ValueError...: any parser error on
            # untrusted bytes means the header cannot be trusted, which is the one thing asked here
            raise FerlabError(f"not a readable image: no {_FORMAT_NAMES} header, or a damaged one") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _size_past_pillow_guard(fp: Any) -> tuple[int, int] | None:
    """The size Pillow's plugin reads from a header its bomb guard refused: the same plugin
    ``Image.open`` picked (its registry, ``Image.OPEN``), without the guard. Only to name the
    size in ferlab's message; None if that does not work out."""
    from PIL import Image

    try:
        fp.seek(0)
        prefix = fp.read(16)
        for fmt in _HEADER_FORMATS:
            factory, accept = Image.OPEN[fmt]
            verdict = True if accept is None else accept(prefix)
            if verdict and not isinstance(verdict, str):  # a str is Pillow's "close, but no"
                fp.seek(0)
                with factory(fp, "") as im:
                    return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - a nicety: the count alone still refuses the image
        return None
    return None


def check_image_size(source: bytes | str | os.PathLike[str], name: str, max_pixels: int | None = None) -> int:
    """The declared pixel count of an encoded image, or a one-line error naming ``name`` when
    it is over ``max_pixels`` (default :func:`max_image_pixels`) or has no readable header.
    The one size check every entry point runs before decoding."""
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    try:
        pixels, size = header_pixels(source)
    except FerlabError as exc:
        raise FerlabError(f"{name} is {exc}") from None
    if pixels <= 0 or (size is not None and min(size) <= 0):
        raise FerlabError(f"{name} is not a readable image (its header declares no pixels)")
    if pixels > limit:
        dims = f"{size[0]}x{size[1]} pixels ({pixels / 1e6:,.0f} Mpx)" if size else f"{pixels:,} pixels"
        raise ImageTooLarge(f"{name} is {dims}, over the limit of {limit / 1e6:g} Mpx: refused before decoding "
                            f"(set {MAX_PIXELS_ENV} to allow more)")
    return pixels


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


def load_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read a photo as 8-bit BGR, or fail with a message naming it. The file is read once, at
    most as many bytes as any image within ``max_pixels`` (default :func:`max_image_pixels`)
    can take, and its header's pixel count is checked on those very bytes before decoding."""
    p = Path(path)
    if not p.exists():
        raise FerlabError(f"image not found: {p}")
    if p.is_dir():
        raise FerlabError(f"{p} is a folder, not an image")
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    cap = limit * _BYTES_PER_PIXEL_MAX + (1 << 20)
    try:
        # read + imdecode instead of imread: imread silently returns None for unicode paths on Windows
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            data = fh.read(cap + 1) if size <= cap else b""
    except OSError as exc:
        raise FerlabError(f"cannot read image {p}: {exc.strerror or exc}") from None
    if size > cap or len(data) > cap:
        raise ImageTooLarge(f"{p} is a {max(size, len(data)) / 1e6:,.0f} MB file, more than any image within the "
                            f"{limit / 1e6:g} Mpx limit takes: refused unread (set {MAX_PIXELS_ENV} to allow more)")
    return decode_image_bytes(data, str(p), limit)


def decode_image_bytes(data: bytes | np.ndarray, name: str, max_pixels: int | None = None, *,
                       checked: bool = False) -> np.ndarray:
    """Encoded image bytes -> 8-bit BGR, or fail with a message naming ``name``. The header is
    checked against ``max_pixels`` first (:func:`check_image_size`; ``checked``: the caller did)."""
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    data = bytes(data) if isinstance(data, (bytearray, memoryview)) else data
    if not data:
        raise FerlabError(f"{name} is not a readable image (empty)")
    if not checked:
        check_image_size(data, name, max_pixels)
    # IMREAD_COLOR: one decode that applies EXIF orientation (phones store rotated JPEGs),
    # drops alpha and brings 16-bit and gray files to 8-bit BGR, the form everything below uses.
    try:
        with _codec_messages_hidden():
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # e.g. over OpenCV's pixel limit (CV_IO_MAX_IMAGE_PIXELS)
        raise FerlabError(f"cannot decode image {name}: {str(exc).strip().splitlines()[-1]}") from None
    if image is None or image.size == 0:
        raise FerlabError(f"{name} is not a readable image (empty, truncated or not an image format)")
    return image


@contextlib.contextmanager
def _codec_messages_hidden() -> Any:
    """File descriptor 2 pointed at /dev/null for the duration, when :data:`QUIET_CODECS` is set
    and this is the main thread (no other thread's output can be lost in between)."""
    if not QUIET_CODECS or threading.current_thread() is not threading.main_thread():
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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


QUARTER_TURNS = {90: 0, 180: 1, 270: 2}  # degrees clockwise -> cv2.ROTATE_90_CLOCKWISE, _180, _90_COUNTERCLOCKWISE


def turn_image(image: np.ndarray, degrees: int) -> np.ndarray:
    """``image`` turned clockwise by 0, 90, 180 or 270 degrees (a copy, except for 0)."""
    if degrees == 0:
        return image
    return cv2.rotate(image, QUARTER_TURNS[degrees])


def unturn_boxes(boxes: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """(x, y, w, h) boxes found in ``turn_image(image, degrees)`` as boxes of ``image`` itself
    (``width`` x ``height``): a quarter turn maps an upright box to an upright box, exactly."""
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x, y, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    if degrees == 0:
        out = b
    elif degrees == 90:  # turned clockwise: a column of the photo became a row, read right to left
        out = np.stack([y, height - (x + w), h, w], axis=1)
    elif degrees == 270:
        out = np.stack([width - (y + h), x, h, w], axis=1)
    elif degrees == 180:
        out = np.stack([width - (x + w), height - (y + h), w, h], axis=1)
    else:
        raise ValueError(f"degrees must be 0, 90, 180 or 270, not {degrees}")
    return out.astype(np.int32)


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


# -- faces to model input: the resize rule ----------------------------------------------------

def resize_interpolation(width: int, height: int, size: int = IMAGE_SIZE) -> int:
    """OpenCV interpolation for bringing a ``width`` x ``height`` crop to ``size`` x ``size``.

    INTER_AREA when both sides shrink (pixel averaging, no aliasing: how the 48x48 FER2013
    faces were made); linear when any side grows, where INTER_AREA degenerates to
    nearest-neighbour. Also baked into the ONNX export's documentation and calibration.
    """
    return cv2.INTER_AREA if (width >= size and height >= size) else cv2.INTER_LINEAR


def resize_face(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A grayscale face image of any size -> ``size`` x ``size`` uint8 by the rule above."""
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
