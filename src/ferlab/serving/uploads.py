"""Reading and checking what clients send, before any of it reaches OpenCV or the model.

Order matters: size first (stop reading at limit + 1 byte, never buffer an unbounded body),
then the declared content type, then the file signature, then the declared pixel count
(a tiny PNG can claim 100k x 100k pixels), and only then a decode. Each failure is an
:class:`UploadError` carrying the HTTP status and a message that says what to send instead,
so no malformed input can surface as a 500.
"""
from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from starlette.requests import ClientDisconnect, Request

MULTIPART_SLACK = 64 * 1024  # boundaries, part headers and small extra fields around the file
MAX_FILE_PARTS = 4  # a form sends one file; a few more are tolerated (the first named 'file' wins)
MAX_FIELD_PARTS = 32
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/webp")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo", "video/avi")
GENERIC_TYPES = ("application/octet-stream", "")


class UploadError(Exception):
    """A client error with its HTTP status; the message is shown to the user as is."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Upload:
    data: bytes
    content_type: str  # as declared by the client (the part's type for multipart), lower case
    filename: str | None = None


def _main_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _too_large(limit: int) -> UploadError:
    return UploadError(413, f"upload too large: the limit is {limit / 1024 / 1024:g} MB "
                            "(ferlab serve --max-upload-mb)")


DEFAULT_IDLE_S = 10.0
DEFAULT_MIN_RATE = 32 * 1024  # bytes/s


async def body_chunks(request: Request, idle_s: float = DEFAULT_IDLE_S,
                      min_rate: float = DEFAULT_MIN_RATE) -> AsyncIterator[bytes]:
    """The request body as it arrives, cut with 408 when the client stalls (no bytes for
    ``idle_s``) or, past the first ``idle_s`` seconds, sends slower than ``min_rate`` bytes/s
    on average. Neither uvicorn nor Starlette times out a body read, so without this a few
    sockets that send headers and two bytes would hold their upload slots for ever. A
    client that hangs up raises Starlette's ``ClientDisconnect`` (the app ends it quietly)."""
    start = time.monotonic()
    received = 0
    chunks = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), idle_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadError(408, f"upload stalled: no data for {idle_s:g} s") from None
        received += len(chunk)
        elapsed = time.monotonic() - start
        if elapsed > idle_s and received < min_rate * elapsed:
            raise UploadError(408, f"upload too slow: {received / 1024 / elapsed:.1f} KiB/s, the least is "
                                   f"{min_rate / 1024:g} KiB/s")
        if chunk:
            yield chunk


async def read_upload(request: Request, limit: int, field: str = "file", *, idle_s: float = DEFAULT_IDLE_S,
                      min_rate: float = DEFAULT_MIN_RATE) -> Upload:
    """The uploaded file, from a raw body (``Content-Type: image/jpeg``) or from multipart
    form field ``field`` (the first file part if no part has that name). At most ``limit``
    bytes of file (plus multipart framing) are read; one more and it is a 413. A body that
    stalls or trickles is cut with 408 (:func:`body_chunks`)."""
    declared = request.headers.get("content-length")
    ctype = _main_type(request.headers.get("content-type"))
    multipart = ctype == "multipart/form-data"
    budget = limit + (MULTIPART_SLACK if multipart else 0)
    if declared is not None:
        try:
            if int(declared) > budget:
                raise _too_large(limit)
        except ValueError:
            raise UploadError(400, "invalid Content-Length header") from None
    body = body_chunks(request, idle_s, min_rate)
    if multipart:
        return await _read_multipart(request, body, limit, budget, field)
    buf = bytearray()
    async for chunk in body:
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit)
    if not buf:
        raise UploadError(400, "empty upload: send the file as the request body or as multipart field 'file'")
    return Upload(bytes(buf), ctype)


async def _read_multipart(request: Request, body: AsyncIterator[bytes], limit: int, budget: int,
                          field: str) -> Upload:
    """Parsed by Starlette's form parser (python-multipart underneath, the parser behind
    FastAPI's ``UploadFile``); the body it reads is cut off at ``budget`` bytes."""
    from starlette.datastructures import UploadFile
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def bounded() -> AsyncIterator[bytes]:
        total = 0
        async for chunk in body:
            total += len(chunk)
            if total > budget:
                raise _too_large(limit)
            yield chunk

    parser = MultiPartParser(request.headers, bounded(), max_files=MAX_FILE_PARTS, max_fields=MAX_FIELD_PARTS)
    try:
        form = await parser.parse()
    except (UploadError, ClientDisconnect):
        raise
    except MultiPartException as exc:
        raise UploadError(400, f"malformed multipart body: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several error types
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    try:
        files = [(name, value) for name, value in form.multi_items() if isinstance(value, UploadFile)]
        chosen = next((v for name, v in files if name == field), files[0][1] if files else None)
        data = await chosen.read(limit + 1) if chosen is not None else b""
        if len(data) > limit:
            raise _too_large(limit)
        if not data:
            raise UploadError(400, f"empty upload: no file in multipart field '{field}'")
        return Upload(data, _main_type(chosen.content_type), chosen.filename)  # type: ignore[union-attr]
    finally:
        await form.close()


# -- images -----------------------------------------------------------------------------------

def sniff_image(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _truncated(data: bytes, kind: str) -> bool:
    """libjpeg decodes a cut JPEG with a grey bottom and only warns; we refuse it instead,
    because faces there would be classified on invented pixels."""
    if kind == "jpeg":
        return data.rfind(b"\xff\xd9") < max(data.rfind(b"\xff\xda"), 2)
    if kind == "png":
        return data.rfind(b"IEND") == -1
    if kind == "bmp":
        return struct.unpack("<I", data[2:6])[0] > len(data)
    if kind == "webp":
        return struct.unpack("<I", data[4:8])[0] + 8 > len(data)
    return False


def check_image_type(upload: Upload) -> None:
    ct = upload.content_type
    if ct not in IMAGE_TYPES and ct not in GENERIC_TYPES and ct != "image/jpg":
        raise UploadError(415, f"unsupported content type {ct!r}: send a JPEG, PNG, BMP or WebP image")


def decode_image(upload: Upload, max_pixels: int) -> np.ndarray:
    """Checked decode to 8-bit BGR (EXIF orientation applied, like ``ferlab predict``). The
    pixel count comes from the header, through the same check as every other entry point
    (:func:`ferlab.inference.preprocess.check_image_size`), before anything is decoded."""
    from ..errors import FerlabError
    from ..inference.preprocess import ImageTooLarge, check_image_size, decode_image_bytes

    check_image_type(upload)
    data = upload.data
    kind = sniff_image(data)
    if kind is None:
        raise UploadError(415, "not a supported image: the data is not JPEG, PNG, BMP or WebP")
    name = upload.filename or "the upload"
    try:
        check_image_size(data, name, max_pixels)
    except ImageTooLarge as exc:
        raise UploadError(413, str(exc).replace(" (set FERLAB_MAX_PIXELS to allow more)", "")) from None
    except FerlabError:
        raise UploadError(422, f"corrupt {kind.upper()}: its header could not be read") from None
    if _truncated(data, kind):
        raise UploadError(422, f"truncated {kind.upper()}: the file ends before the image data does")
    try:
        return decode_image_bytes(data, name, checked=True)
    except FerlabError:
        raise UploadError(422, f"could not decode the {kind.upper()} (corrupt or unsupported variant)") from None


# -- videos -----------------------------------------------------------------------------------

def sniff_video(data: bytes) -> str | None:
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    return None


def check_video(upload: Upload) -> str:
    """The container kind (also the temp file's suffix, which FFmpeg uses as a hint)."""
    ct = upload.content_type
    if ct not in VIDEO_TYPES and ct not in GENERIC_TYPES:
        raise UploadError(415, f"unsupported content type {ct!r}: send an MP4, MOV, WebM, MKV or AVI video")
    kind = sniff_video(upload.data)
    if kind is None:
        raise UploadError(415, "not a supported video: the data is not MP4/MOV, WebM/MKV or AVI")
    return kind
