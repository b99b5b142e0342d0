"""``ferlab serve``: the HTTP API, the live websocket and the limits, through FastAPI's
TestClient on the real sample photos and a real (tiny, random-weight) checkpoint.

Only small images are sent (320x240, 424x394): face detection dominates the cost and the
test machines are shared with training jobs.
"""
from __future__ import annotations

import asyncio
import json
import re
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ferlab.constants import CLASS_NAMES

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from ferlab.errors import FerlabError  # noqa: E402
from ferlab.inference.overlay import layout_json  # noqa: E402
from ferlab.serving import Limits, create_app  # noqa: E402
from ferlab.serving.uploads import UploadError, read_upload  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The app answers only to the names it is addressed by (loopback by default), not to
# TestClient's made-up "testserver": tests talk to it as a browser on this machine would.
BASE = "http://127.0.0.1:8000"
WS_LIVE = "ws://127.0.0.1:8000/ws/live"  # TestClient's websockets ignore base_url: an absolute URL


@pytest.fixture(scope="module")
def recognizer(tiny_checkpoint: Path) -> Any:
    from ferlab.inference import Recognizer

    return Recognizer.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="module")
def client(recognizer: Any) -> TestClient:
    with TestClient(create_app(recognizer, Limits(max_upload_mb=2)), base_url=BASE) as c:
        yield c


@pytest.fixture(scope="module")
def small_jpeg(samples_dir: Path) -> bytes:
    return (samples_dir / "photos" / "obama_small.jpg").read_bytes()


def _check_face(face: dict[str, Any], width: int, height: int, tracked: bool) -> None:
    assert list(face) == ["box", "track_id", "label", "confidence", "probs", "smoothed", "uncertain", "uncertainty"]
    x, y, w, h = face["box"]
    assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= width and y + h <= height
    assert list(face["probs"]) == list(CLASS_NAMES)
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    shown = face["smoothed"] if tracked else face["probs"]
    assert face["label"] == max(shown, key=shown.get)
    assert face["confidence"] == pytest.approx(max(shown.values()), abs=1e-6)
    if tracked:
        assert isinstance(face["track_id"], int)
        assert list(face["smoothed"]) == list(CLASS_NAMES)
    else:
        assert face["track_id"] is None and face["smoothed"] is None


# -- photos -------------------------------------------------------------------------------------

def test_predict_multipart_matches_python_api(client: TestClient, recognizer: Any, samples_dir: Path) -> None:
    path = samples_dir / "photos" / "obama_small.jpg"
    r = client.post("/api/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    image = cv2.imread(str(path))
    assert (body["file"], body["width"], body["height"]) == (path.name, image.shape[1], image.shape[0])
    assert len(body["faces"]) >= 1
    for face in body["faces"]:
        _check_face(face, body["width"], body["height"], tracked=False)
    # same JSON as the Python API (and so as `ferlab predict`) on the same pixels
    faces = recognizer.predict(image)
    assert body["faces"] == [f.to_dict() for f in faces]
    # and the layout the page draws them by: overlay's, the plan of every annotated frame
    assert body["layout"] == layout_json(image.shape, faces)
    assert len(body["layout"]["tags"]) == len(body["layout"]["panels"]) == len(faces)


def test_predict_raw_png_body(client: TestClient, samples_dir: Path) -> None:
    path = samples_dir / "photos" / "alex-lacamoire.png"
    r = client.post("/api/predict", content=path.read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["width"], body["height"]) == (424, 394)
    assert body["file"] is None
    assert len(body["faces"]) >= 1
    _check_face(body["faces"][0], 424, 394, tracked=False)


def test_predict_annotated_jpeg(client: TestClient, small_jpeg: bytes) -> None:
    r = client.post("/api/predict?annotate=true", content=small_jpeg, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    drawn = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imdecode(np.frombuffer(small_jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == original.shape
    assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100  # boxes/labels were drawn


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header (with a valid CRC, as a real bomb has) declares width x height."""
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("case", ["empty", "text-file", "text-as-jpeg", "truncated-jpeg", "wrong-type",
                                  "oversized", "pixel-bomb", "no-boundary"])
def test_predict_rejects_bad_input(client: TestClient, small_jpeg: bytes, case: str) -> None:
    kwargs: dict[str, Any]
    expected, words = {
        "empty": (400, "empty upload"),
        "text-file": (415, "unsupported content type 'text/plain'"),
        "text-as-jpeg": (415, "not a supported image"),
        "truncated-jpeg": (422, "truncated JPEG"),
        "wrong-type": (415, "unsupported content type 'application/json'"),
        "oversized": (413, "upload too large"),
        "pixel-bomb": (413, "9000x9000 pixels"),
        "no-boundary": (400, "boundary"),
    }[case]
    if case == "empty":
        kwargs = {"content": b"", "headers": {"content-type": "image/jpeg"}}
    elif case == "text-file":
        kwargs = {"files": {"file": ("notes.txt", b"just some text\n", "text/plain")}}
    elif case == "text-as-jpeg":
        kwargs = {"files": {"file": ("fake.jpg", b"just some text\n", "image/jpeg")}}
    elif case == "truncated-jpeg":
        kwargs = {"content": small_jpeg[: len(small_jpeg) // 2], "headers": {"content-type": "image/jpeg"}}
    elif case == "wrong-type":
        kwargs = {"content": small_jpeg, "headers": {"content-type": "application/json"}}
    elif case == "oversized":
        kwargs = {"files": {"file": ("big.jpg", small_jpeg + b"\0" * (2 * 1024 * 1024), "image/jpeg")}}
    elif case == "pixel-bomb":
        kwargs = {"content": _png_claiming(9000, 9000), "headers": {"content-type": "image/png"}}
    else:
        kwargs = {"content": small_jpeg, "headers": {"content-type": "multipart/form-data"}}
    r = client.post("/api/predict", **kwargs)
    assert r.status_code == expected, r.text
    assert r.headers["content-type"] == "application/json"
    assert words in r.json()["detail"]


def test_upload_reading_stops_after_limit() -> None:
    """A body without Content-Length is consumed only until it passes the limit."""
    from starlette.requests import Request

    chunk = b"\xff" * 1024
    sent = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": chunk, "more_body": sent < 1000}  # 1000 KiB offered

    scope = {"type": "http", "method": "POST", "path": "/api/predict", "headers": [(b"content-type", b"image/jpeg")]}
    with pytest.raises(UploadError) as err:
        asyncio.run(read_upload(Request(scope, receive), limit=10 * 1024))
    assert err.value.status == 413
    assert sent == 11  # 10 KiB allowed, the 11th chunk crosses the limit, nothing more is read

    # a declared Content-Length over the limit is refused before reading any of the body
    sent = 0
    scope["headers"] = [(b"content-type", b"image/jpeg"), (b"content-length", b"999999")]
    with pytest.raises(UploadError):
        asyncio.run(read_upload(Request(scope, receive), limit=10 * 1024))
    assert sent == 0


def test_multipart_any_file_field_and_bounded_reading(small_jpeg: bytes) -> None:
    """Multipart goes through Starlette's parser (FastAPI's UploadFile): a file under another
    field name is taken when there is no 'file' field, and a body without Content-Length is
    read only until it passes the budget."""
    from starlette.requests import Request

    boundary = b"xyzzy"
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--' + boundary
            + b'\r\nContent-Disposition: form-data; name="photo"; filename="me.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n")
    body = head + small_jpeg + b"\r\n--" + boundary + b"--\r\n"
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]

    def request(chunks: list[bytes]) -> tuple[Request, list[int]]:
        sent = [0]

        async def receive() -> dict[str, Any]:
            i = sent[0]
            sent[0] += 1
            return {"type": "http.request", "body": chunks[i] if i < len(chunks) else b"",
                    "more_body": i + 1 < len(chunks)}

        return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive), sent

    req, _ = request([body[i:i + 4096] for i in range(0, len(body), 4096)])
    upload = asyncio.run(read_upload(req, limit=len(small_jpeg)))
    assert (upload.data, upload.filename, upload.content_type) == (small_jpeg, "me.jpg", "image/jpeg")

    big = head + b"\0" * (1024 * 1024)
    req, sent = request([big[i:i + 1024] for i in range(0, len(big), 1024)])
    with pytest.raises(UploadError) as err:
        asyncio.run(read_upload(req, limit=10 * 1024))
    assert err.value.status == 413
    assert sent[0] < (10 + 64) + 5  # stopped near the 10 KiB + 64 KiB framing budget, not after 1 MiB


# -- static files, docs, health, model ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/static/../../etc/passwd", "/static/..%2f..%2fetc%2fpasswd",
                                  "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%5c..%5capp.py",
                                  "/static/app.py", "/static/"])
def test_static_path_traversal_is_refused(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert "root:" not in r.text and "import" not in r.text


def test_page_and_assets_are_served_without_cdn(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css", "docs.js"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff"
    texts = [page.text] + [client.get(f"/static/{a}").text for a in ("app.js", "style.css", "docs.js")]
    texts.append(client.get("/docs").text)
    external = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
                          r"""(?:fetch|WebSocket|import)\s*\(?\s*["'`](?:https?:|wss?:)?//""")
    for text in texts:
        assert not external.search(text), external.search(text)
    assert 'src="/static/app.js"' in page.text


def test_openapi_and_offline_docs(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/video", "/api/health", "/api/model"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and 'src="/static/docs.js"' in docs.text
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN-based pages are off


def test_health_and_model(client: TestClient) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["clients"] == 0
    assert health["limits"]["max_upload_mb"] == 2 and health["limits"]["max_clients"] == 8
    model = client.get("/api/model").json()
    assert model["classes"] == list(CLASS_NAMES)
    assert (model["name"], model["file"], model["arch"]) == ("tiny", "tiny.safetensors", "fernet")
    assert model["accuracy"] is None  # the tiny checkpoint has no metrics on record
    assert model["backend"] in ("onnx", "torch") and model["detector"] == "yunet"


def test_model_accuracy_on_record(recognizer: Any, tmp_path: Path, tiny_checkpoint: Path) -> None:
    from ferlab.serving.app import describe_model

    ckpt = tmp_path / "best.safetensors"
    ckpt.write_bytes(tiny_checkpoint.read_bytes())
    meta = json.loads(tiny_checkpoint.with_suffix(".json").read_text())
    meta["metrics"] = {"val": {"accuracy": 0.71}, "test": {"accuracy": 0.7}}
    ckpt.with_suffix(".json").write_text(json.dumps(meta))

    class Pointed:  # the recognizer's fields, pointed at the run folder's checkpoint
        source = str(ckpt)
        class_names = recognizer.class_names
        backend = recognizer.backend
        detector = recognizer.detector

    info = describe_model(Pointed())
    assert info["name"] == tmp_path.name  # a run folder's best.safetensors is named after the run
    assert info["accuracy"] == {"val": 0.71, "test": 0.7}


def test_model_description_comes_from_the_recognizer(recognizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recognizer keeps what it read when it loaded the model; the app reads no sidecar."""
    from ferlab.inference.model_info import ModelInfo

    def no_reading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the server re-read model metadata")

    monkeypatch.setattr(ModelInfo, "read", classmethod(no_reading))
    info = recognizer.info
    assert (info.name, info.file, info.arch, info.format) == ("tiny", "tiny.safetensors", "fernet", "safetensors")
    assert info.class_names == list(CLASS_NAMES) and info.mean == recognizer.mean
    with TestClient(create_app(recognizer), base_url=BASE) as c:
        assert c.get("/api/model").json()["name"] == "tiny"


# -- live websocket ------------------------------------------------------------------------------

def test_websocket_three_frames(client: TestClient, small_jpeg: bytes) -> None:
    results = []
    with client.websocket_connect(WS_LIVE) as ws:
        for _ in range(4):
            ws.send_bytes(small_jpeg)
            results.append(ws.receive_json())  # one in flight, as the page does
    assert [r["type"] for r in results] == ["result"] * 4
    assert [r["seq"] for r in results] == [1, 2, 3, 4]
    assert [r["frame"] for r in results] == [0, 1, 2, 3]
    assert all(r["dropped"] == 0 for r in results)
    times = [r["time"] for r in results]
    assert times == sorted(times)
    for r in results:
        assert (r["width"], r["height"]) == (320, 240)
        assert r["server_ms"] > 0
        for face in r["faces"]:
            _check_face(face, 320, 240, tracked=True)
        assert len(r["layout"]["tags"]) == len(r["layout"]["panels"]) == len(r["faces"])
        for face, tag in zip(r["faces"], r["layout"]["tags"]):  # the label the page writes
            assert tag["text"].startswith(f"#{face['track_id']} ") and face["label"] in tag["text"]
    # a new face is shown once confirmed (its third detection), never a frame before
    assert [len(r["faces"]) >= 1 for r in results] == [False, False, True, True]
    # one person in a still image keeps one track id
    assert len({r["faces"][0]["track_id"] for r in results[2:]}) == 1


def test_websocket_bad_frame_then_good(client: TestClient, small_jpeg: bytes) -> None:
    with client.websocket_connect(WS_LIVE) as ws:
        ws.send_bytes(b"not a jpeg")
        err = ws.receive_json()
        assert err["type"] == "error" and err["seq"] == 1 and "not a supported image" in err["error"]
        ws.send_text("hello")
        assert "binary JPEG" in ws.receive_json()["error"]
        ws.send_bytes(small_jpeg)
        ok = ws.receive_json()
        assert ok["type"] == "result" and ok["seq"] == 2


def test_websocket_newest_frame_wins(recognizer: Any, small_jpeg: bytes) -> None:
    """Five frames sent at once to a server paced at 2 results/s: the older pending frames
    are dropped, the newest one is always answered, nothing queues up."""
    with TestClient(create_app(recognizer, Limits(max_fps=2)), base_url=BASE) as c, \
            c.websocket_connect(WS_LIVE) as ws:
        for _ in range(5):
            ws.send_bytes(small_jpeg)
        results = [ws.receive_json()]
        while results[-1]["seq"] != 5:
            results.append(ws.receive_json())
    seqs = [r["seq"] for r in results]
    assert seqs == sorted(seqs) and len(seqs) <= 2
    assert results[-1]["dropped"] == 5 - len(results)


def test_websocket_client_limit(recognizer: Any, small_jpeg: bytes) -> None:
    with TestClient(create_app(recognizer, Limits(max_clients=1)), base_url=BASE) as c:
        with c.websocket_connect(WS_LIVE) as first:
            with c.websocket_connect(WS_LIVE) as second:
                msg = second.receive_json()
                assert msg["type"] == "error" and "server busy" in msg["error"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                assert closed.value.code == 1013 and "max-clients" in closed.value.reason
            assert c.get("/api/health").json()["clients"] == 1
            first.send_bytes(small_jpeg)
            assert first.receive_json()["type"] == "result"  # the admitted client is unaffected
        deadline = time.monotonic() + 5
        while c.get("/api/health").json()["clients"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.get("/api/health").json()["clients"] == 0  # the slot is freed on disconnect


def test_websocket_refuses_other_origins(client: TestClient, small_jpeg: bytes) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(WS_LIVE, headers={"origin": "http://evil.example"}):
            pass
    assert refused.value.code == 1008
    # the page itself (same host:port) is welcome
    with client.websocket_connect(WS_LIVE, headers={"origin": BASE}) as ws:
        ws.send_bytes(small_jpeg)
        assert ws.receive_json()["type"] == "result"


def test_websocket_frame_too_large(recognizer: Any) -> None:
    with TestClient(create_app(recognizer, Limits(max_frame_mb=0.01)), base_url=BASE) as c, \
            c.websocket_connect(WS_LIVE) as ws:
        ws.send_bytes(b"\xff\xd8\xff" + b"\0" * 20_000)
        assert "frame too large" in ws.receive_json()["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1009


# -- video ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_video(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """15 small frames of the sample clip with the performer's face (frames 125-139)."""
    cap = cv2.VideoCapture(str(samples_dir / "short_hamilton_clip.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 125)
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (320, 180))
    for _ in range(15):
        ok, frame = cap.read()
        assert ok
        out.write(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA))
    out.release()
    cap.release()
    return path.read_bytes()


def test_video_per_frame_records(recognizer: Any, short_video: bytes, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with TestClient(create_app(recognizer, Limits(max_video_frames=4)), base_url=BASE) as c:
        r = c.post("/api/video?sample_fps=10", files={"file": ("clip.mp4", short_video, "video/mp4")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file"] == "clip.mp4"
    assert body["video"]["width"] == 320 and body["video"]["height"] == 180
    assert body["sample_fps"] == 10 and body["stopped"] == "max_video_frames"
    frames = body["frames"]
    assert [f["frame"] for f in frames] == [0, 3, 6, 9]  # 30 fps sampled at 10 fps
    assert [f["time"] for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-3)
    assert sum(len(f["faces"]) for f in frames) >= 2  # shown from the third sampled frame (confirmed)
    for f in frames:
        assert list(f) == ["frame", "time", "faces", "layout"]
        for face in f["faces"]:
            _check_face(face, 320, 180, tracked=True)
        assert len(f["layout"]["tags"]) == len(f["layout"]["panels"]) == len(f["faces"])
        for tag in f["layout"]["tags"]:
            x, y, w, h = tag["rect"]
            assert 0 <= x and x + w <= 320 and 0 <= y and y + h <= 180  # in the video's pixels
    assert list(scratch.iterdir()) == []  # the uploaded video's temp dir is gone


def test_video_rejects_bad_input(client: TestClient, short_video: bytes, small_jpeg: bytes) -> None:
    r = client.post("/api/video", files={"file": ("photo.jpg", small_jpeg, "image/jpeg")})
    assert r.status_code == 415 and "unsupported content type 'image/jpeg'" in r.json()["detail"]
    r = client.post("/api/video", files={"file": ("x.mp4", b"\0" * 100, "video/mp4")})
    assert r.status_code == 415 and "not a supported video" in r.json()["detail"]
    r = client.post("/api/video", files={"file": ("cut.mp4", short_video[:2000], "video/mp4")})
    assert r.status_code == 422 and "video" in r.json()["detail"]
    r = client.post("/api/video?sample_fps=-1", files={"file": ("clip.mp4", short_video, "video/mp4")})
    assert r.status_code == 422


# -- command line ----------------------------------------------------------------------------------

def test_limits_are_validated() -> None:
    with pytest.raises(FerlabError, match="max_clients=0"):
        Limits(max_clients=0)
    assert Limits(max_upload_mb=1.5).max_upload_bytes == 1572864


def test_serve_cli_parses_and_refuses_busy_port() -> None:
    from ferlab.cli import build_parser
    from ferlab.serving.cli import _bind

    args = build_parser().parse_args(["serve", "--port", "0", "--max-clients", "3", "--max-upload-mb", "5"])
    assert args.host == "127.0.0.1" and args.port == 0 and args.max_clients == 3 and callable(args.func)
    sock = _bind("127.0.0.1", 0)
    try:
        sock.listen(1)
        with pytest.raises(FerlabError, match="port in use"):
            _bind("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()


def test_serve_command_end_to_end(tiny_checkpoint: Path, small_jpeg: bytes) -> None:
    """The real command: prints its URL, answers HTTP and the websocket, stops on SIGTERM."""
    import httpx
    from websockets.sync.client import connect

    proc = subprocess.Popen([sys.executable, "-m", "ferlab", "serve", "--model", str(tiny_checkpoint), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("ferlab serve: http://127.0.0.1:"), line + proc.stderr.read()  # type: ignore[union-attr]
        url = line.split()[2].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        with connect(url.replace("http", "ws") + "/ws/live", open_timeout=10) as ws:
            for _ in range(3):  # a face is shown from its third frame (confirmed track)
                ws.send(small_jpeg)
                msg = json.loads(ws.recv(timeout=30))
        assert msg["type"] == "result" and len(msg["faces"]) >= 1
    finally:
        proc.terminate()
        code = proc.wait(timeout=15)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the parent sees why it stopped
    assert code in (0, -15)
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
