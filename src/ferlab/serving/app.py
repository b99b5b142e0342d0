"""The ``ferlab serve`` web app: a page for the webcam and uploads, and the JSON API behind it.

Endpoints (JSON shapes are those of ``Face.to_dict()`` / ``FrameResult.to_dict()``, the same
as ``ferlab predict`` / ``ferlab video --jsonl`` and the Python API, plus ``layout``: where
each face's label and distribution go, :func:`ferlab.inference.overlay.layout_json`, which
the page draws as it is sent):

* ``POST /api/predict``: one photo (raw body or multipart field ``file``) ->
  ``{"file", "width", "height", "faces": [...], "layout"}``; ``?annotate=true`` returns the
  annotated JPEG.
* ``POST /api/video``: a short video -> per-frame records (one tracking session), each with
  its ``layout``.
* ``GET /api/health``, ``GET /api/model``; ``/openapi.json``; ``/docs`` is ferlab's own
  offline page over the schema (FastAPI's Swagger page loads its code from a CDN, which
  offline machines and many networks cannot reach).
* ``WS /ws/live``: the client sends JPEG frames as binary messages and gets one JSON text
  message per processed frame: ``{"type": "result", "seq", "dropped", "width", "height",
  "server_ms", "frame", "time", "faces", "layout"}`` (or ``{"type": "error", "error"}``). ``seq`` counts
  the frames received on the connection. A text message ``{"type": "reset"}`` starts a new
  session (new track ids, empty smoothing).

Live back-pressure: the connection holds at most one pending frame; a newer frame replaces
it (counted in ``dropped``), so a slow server makes clients skip frames instead of building a
queue and latency. Clients in the page also keep one frame in flight.

Who may call it (:mod:`.guards`): requests must name an allowed Host (400 otherwise), pages
of other origins are refused (403; websocket closed with 1008), and when a token is set every
``/api`` and ``/ws`` request needs it (401). Upload bodies that stall or trickle get 408;
each client address has at most ``max_uploads_per_client`` bodies in flight (429); a client
that hangs up mid-upload ends its request without a log line.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from starlette.websockets import WebSocketDisconnect

from ..errors import FerlabError
from .inference_pool import InferencePool
from .guards import Access, AccessGuard
from .limits import Limits
from .uploads import Upload, UploadError, check_video, read_upload

log = logging.getLogger("ferlab.serve")

STATIC_DIR = Path(__file__).parent / "static"
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# Everything the page needs is served from this origin; blob: for uploaded previews.
_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
        "connect-src 'self' ws: wss: blob:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": _CSP,
                     "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
WS_BUSY = 1013  # "try again later"
WS_TOO_BIG = 1009

_UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
_ERRORS = {400: {"description": "empty or malformed upload"}, 401: {"description": "token required"},
           403: {"description": "cross-origin request refused"}, 408: {"description": "upload stalled or too slow"},
           413: {"description": "upload too large, or an image over the pixel limit"},
           415: {"description": "not a supported media type"}, 422: {"description": "corrupt or undecodable"},
           429: {"description": "too many uploads in progress from this client"},
           503: {"description": "server busy, retry"}}
CLIENT_GONE = 499  # nginx's "client closed request": logged as such, never sent (nobody is listening)


def describe_model(recognizer: Any) -> dict[str, Any]:
    """Name, classes and accuracy on record, from what the recognizer learnt when it loaded
    its model (``recognizer.info``). Only file names are reported, never paths: the page may
    be open to the LAN."""
    from ..inference.model_info import ModelInfo

    info = getattr(recognizer, "info", None)
    source = getattr(recognizer, "source", None)
    if not isinstance(info, ModelInfo):  # a stand-in that only knows its file
        info = ModelInfo.read(source) if source else None
    return {"name": info.name if info else None, "file": info.file if info else None,
            "arch": info.arch if info else None, "classes": list(recognizer.class_names),
            "accuracy": (info.accuracy() or None) if info else None,
            "backend": getattr(getattr(recognizer, "backend", None), "name", None),
            "detector": getattr(getattr(recognizer, "detector", None), "name", None)}


def _load_recognizer(spec: Any, options: Any = None) -> Any:
    if hasattr(spec, "predict") and hasattr(spec, "session"):
        return spec
    from ..inference import Recognizer

    return Recognizer.from_pretrained(None if spec is None else str(spec), options=options)


def create_app(recognizer_or_model_path: Any = None, limits: Limits | None = None, *,
               options: Any = None, access: Access | None = None) -> FastAPI:
    """The app around a ready :class:`~ferlab.inference.Recognizer`, or a model spec (shipped
    name, checkpoint, run folder; None = default model) loaded with ``options``
    (:class:`~ferlab.inference.options.InferenceOptions`; default options when None).
    ``access``: allowed Host names and the token (default: loopback names, no token)."""
    limits = limits or Limits()
    access = access or Access()
    engine = InferencePool(_load_recognizer(recognizer_or_model_path, options), limits)
    app = _new_app(engine, access)
    _add_error_handlers(app)
    _add_pages(app)
    _add_info_routes(app, engine)
    _add_upload_routes(app, engine)
    _add_live_route(app, engine)
    return app


def _new_app(engine: InferencePool, access: Access) -> FastAPI:
    """The FastAPI app, its state, the engine's shutdown and the access guards."""
    from .._version import __version__

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        engine.close()

    app = FastAPI(title="ferlab", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Facial emotion recognition (FER2013, 7 classes) on photos, videos and live frames.")
    app.state.engine = engine
    app.state.limits = engine.limits
    app.state.access = access
    # Added last = outermost: the Host check runs first, on HTTP and websocket alike.
    app.add_middleware(AccessGuard, access=access)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(access.allowed_hosts), www_redirect=False)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Upload refusals and ferlab's own errors as ``{"detail": ...}``; a client that hung up
    as a log line only."""

    @app.exception_handler(UploadError)
    async def _upload_error(_: Request, exc: UploadError) -> JSONResponse:
        headers = {"Retry-After": "2"} if exc.status in (429, 503) else None
        if exc.status == 408:  # the client may still be sending: this connection is done
            headers = {"Connection": "close"}
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _: ClientDisconnect) -> Response:
        log.debug("client %s hung up during %s", request.client, request.url.path)
        return Response(status_code=CLIENT_GONE)

    @app.exception_handler(FerlabError)
    async def _ferlab_error(_: Request, exc: FerlabError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)


def _add_pages(app: FastAPI) -> None:
    """The page, the API's own docs page and their static files."""
    static_files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and p.suffix in _MEDIA_TYPES} \
        if STATIC_DIR.is_dir() else {}

    def _static(name: str) -> Response:
        path = static_files.get(name)
        if path is None:
            return JSONResponse({"detail": "not found"}, status_code=404)
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_SECURITY_HEADERS)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return _static("index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return _static("docs.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        # Only names listed at start-up are served: no path ever reaches the file system.
        return _static(name)


def _add_info_routes(app: FastAPI, engine: InferencePool) -> None:
    """``/api/health`` and ``/api/model``."""
    from .._version import __version__

    limits = engine.limits
    model_info = describe_model(engine.recognizer)

    @app.get("/api/health", summary="Liveness and current load")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "model": model_info["name"],
                "uptime_s": round(time.monotonic() - engine.started, 1), "clients": engine.clients,
                "limits": {"max_upload_mb": limits.max_upload_mb, "max_clients": limits.max_clients,
                           "max_fps": limits.max_fps, "max_video_seconds": limits.max_video_seconds,
                           "max_video_frames": limits.max_video_frames, "video_fps": limits.video_fps}}

    @app.get("/api/model", summary="The model: name, architecture, classes, accuracy on record")
    def model() -> dict[str, Any]:
        return model_info


def _add_upload_routes(app: FastAPI, engine: InferencePool) -> None:
    """``POST /api/predict`` (a photo) and ``POST /api/video``."""

    @app.post("/api/predict", summary="Faces and emotions in one photo", openapi_extra=_UPLOAD_BODY,
              responses={**_ERRORS, 200: {"content": {"application/json": {}, "image/jpeg": {}}}})
    async def predict(request: Request, annotate: bool = Query(False, description="return the annotated JPEG")
                      ) -> Response:
        _refuse_if_busy(engine)  # no point reading a body that would be refused
        upload = await _read(engine, request)
        _refuse_if_busy(engine)  # a request counts as pending once its body is in, not while it arrives
        engine.pending += 1
        try:
            out = await engine.call(engine.predict, upload, annotate)
            if isinstance(out, bytes):
                return Response(out, media_type="image/jpeg")
            return JSONResponse({"file": upload.filename, **out})
        finally:
            engine.pending -= 1

    @app.post("/api/video", summary="Per-frame faces and emotions in a short video (one tracking session)",
              openapi_extra=_UPLOAD_BODY, responses=_ERRORS)
    async def video(request: Request, sample_fps: float | None = Query(
            None, gt=0, le=120, description="frames analysed per second of video (default: the server's video_fps)")
                    ) -> dict[str, Any]:
        if engine.video_jobs >= engine.limits.max_video_jobs:
            raise UploadError(503, "server busy: another video is being analysed, retry when it is done")
        engine.video_jobs += 1
        try:
            return await _analyse_video_upload(engine, request, sample_fps)
        finally:
            engine.video_jobs -= 1


async def _read(engine: InferencePool, request: Request) -> Upload:
    """The upload, read within the client's upload slot (:meth:`InferencePool.upload_slot`)."""
    limits = engine.limits
    with engine.upload_slot(request.client.host if request.client else "unknown"):
        return await read_upload(request, limits.max_upload_bytes, idle_s=limits.upload_idle_s,
                                 min_rate=limits.upload_min_rate)


def _refuse_if_busy(engine: InferencePool) -> None:
    if engine.pending >= engine.limits.max_pending:
        raise UploadError(503, "server busy: too many photos in progress, retry in a moment")


async def _analyse_video_upload(engine: InferencePool, request: Request, sample_fps: float | None) -> dict[str, Any]:
    """Read a video upload into a temporary file and analyse it in the video pool; a client
    that hangs up cancels the analysis."""
    cancel = threading.Event()
    upload = await _read(engine, request)
    kind = check_video(upload)
    filename = upload.filename
    with tempfile.TemporaryDirectory(prefix="ferlab-serve-") as tmp:
        path = Path(tmp) / f"upload.{kind}"
        try:
            path.write_bytes(upload.data)
        except OSError as exc:
            raise UploadError(507, f"the server could not store the video: {exc.strerror or exc}") from None
        del upload
        job = asyncio.ensure_future(engine.call(engine.analyse_video, path, sample_fps, cancel, video=True))
        try:
            while not job.done():
                await asyncio.wait({job}, timeout=0.5)
                if not job.done() and await request.is_disconnected():
                    cancel.set()  # nobody is waiting for the answer
            result = job.result()
        finally:
            cancel.set()
            if not job.done():  # the handler itself was cancelled: let the worker stop first
                with contextlib.suppress(Exception):
                    await asyncio.shield(job)
    return {"file": filename, **result}


def _add_live_route(app: FastAPI, engine: InferencePool) -> None:
    """``WS /ws/live``: one :class:`LiveConnection` per client, up to ``max_clients``."""
    limits = engine.limits

    @app.websocket("/ws/live")
    async def live(ws: WebSocket) -> None:
        # Host, Origin and token were checked by the middleware (.guards) before this runs.
        if engine.clients >= limits.max_clients:
            reason = f"server busy: {limits.max_clients} live clients already connected (--max-clients)"
            await ws.accept()
            await ws.send_text(json.dumps({"type": "error", "error": reason}))
            await ws.close(code=WS_BUSY, reason=reason)
            return
        engine.clients += 1
        try:
            await ws.accept()
            await LiveConnection(ws, engine).run()
        finally:
            engine.clients -= 1


class LiveConnection:
    """One websocket client: a receiver that keeps only the newest frame, and a processor
    that runs it and replies, paced to at most ``max_fps`` results per second."""

    def __init__(self, ws: WebSocket, engine: InferencePool) -> None:
        self.ws = ws
        self.engine = engine
        self.limits = engine.limits
        self.pending: tuple[int, bytes] | None = None
        self.wake = asyncio.Event()
        self.closed = False
        self.received = 0
        self.dropped = 0
        self.reset_requested = False

    async def run(self) -> None:
        # The receive loop runs in the handler itself and the processor beside it, so a
        # disconnect ends the handler at once (no extra awaits that a server shutdown or a
        # test client could cancel half-way).
        processor = asyncio.ensure_future(self._process())
        processor.add_done_callback(self._processor_done)
        try:
            await self._receive()
        except WebSocketDisconnect:
            pass
        finally:
            self.closed = True
            processor.cancel()

    def _processor_done(self, task: asyncio.Future[None]) -> None:
        if task.cancelled() or self.closed:
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, WebSocketDisconnect):
            log.error("live connection failed", exc_info=exc)
            # closing makes the client hang up, which ends the receive loop
            asyncio.ensure_future(self._close_quietly(1011, "internal error"))

    async def _close_quietly(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def _send(self, obj: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(obj))

    async def _receive(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is None:
                await self._control(msg.get("text") or "")
                continue
            if len(data) > self.limits.max_frame_bytes:
                reason = f"frame too large (limit {self.limits.max_frame_mb:g} MB)"
                await self._send({"type": "error", "error": reason})
                await self.ws.close(code=WS_TOO_BIG, reason=reason)
                return
            self.received += 1
            if self.pending is not None:
                self.dropped += 1  # newest frame wins; the older one was never processed
            self.pending = (self.received, data)
            self.wake.set()

    async def _control(self, text: str) -> None:
        try:
            kind = json.loads(text).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind == "reset":
            self.reset_requested = True
        elif kind != "ping":
            await self._send({"type": "error", "error": "send frames as binary JPEG messages; "
                                                       "text messages may be {\"type\": \"reset\"}"})

    async def _process(self) -> None:
        engine = self.engine
        session = await engine.call(engine.new_session)
        start = time.monotonic()
        last = 0.0
        interval = 1.0 / self.limits.max_fps
        while True:
            await self.wake.wait()
            wait = last + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # rate bound; a newer frame may replace the pending one meanwhile
            self.wake.clear()
            if self.pending is None:
                continue
            seq, data = self.pending
            self.pending = None
            if self.reset_requested:
                self.reset_requested = False
                session = await engine.call(engine.new_session)
                start = time.monotonic()
            last = time.monotonic()
            try:
                out = await engine.call(engine.live_step, session, data, last - start)
            except UploadError as exc:
                await self._send({"type": "error", "seq": seq, "error": exc.message})
                continue
            await self._send({"type": "result", "seq": seq, "dropped": self.dropped, **out})
