"""``ferlab serve``'s guards, each as a test: the Host allowlist (DNS rebinding), Origin checked
against the allowlist (cross-origin POSTs and websockets), the token beyond loopback, and
the upload bounds (stalled and trickling bodies, uploads per client, hang-ups).

The app runs on a stand-in recognizer that counts its calls (a guard must stop a request
before any inference), through TestClient for the header checks and under a real uvicorn
on a loopback port for what only sockets can do (stall, trickle, hang up).
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ferlab.constants import CLASS_NAMES

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.testclient import WebSocketDenialResponse  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from ferlab.serving import Limits, create_app  # noqa: E402
from ferlab.serving.inference_pool import PixelBudget  # noqa: E402
from ferlab.serving.guards import Access, allowed_hosts_for, resolve_token  # noqa: E402

PORT = 8765
HOME = f"http://127.0.0.1:{PORT}"
EVIL = f"http://evil.example:{PORT}"  # a rebinding page: evil.example resolves to 127.0.0.1


class _Result:
    def __init__(self, t: float | None) -> None:
        self.t = t
        self.faces: list[Any] = []

    def to_dict(self) -> dict[str, Any]:
        return {"frame": 0, "time": self.t, "faces": []}


class _Session:
    def __init__(self, rec: Stub) -> None:
        self.recognizer = rec

    def process(self, image: Any, timestamp: float | None = None) -> _Result:
        self.recognizer.calls += 1
        return _Result(timestamp)


class Stub:
    """Enough of a Recognizer for the app: counts every inference it is asked for."""

    class_names = list(CLASS_NAMES)

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, image: Any) -> list[Any]:
        self.calls += 1
        return []

    def session(self) -> _Session:
        return _Session(self)


@pytest.fixture(scope="module")
def jpeg(samples_dir: Path) -> bytes:
    return (samples_dir / "photos" / "obama_small.jpg").read_bytes()


def _post(c: TestClient, jpeg: bytes, **headers: str) -> Any:
    return c.post("/api/predict", content=jpeg, headers={"content-type": "image/jpeg", **headers})


# -- Host allowlist: DNS rebinding ---------------------------------------------------------------

def test_a_rebinding_page_gets_nothing(jpeg: bytes) -> None:
    """Host evil.example (the page's own name, now resolving to 127.0.0.1): 400 on every path,
    no inference; the websocket, even with a matching Origin, is refused before it opens."""
    stub = Stub()
    app = create_app(stub)
    with TestClient(app, base_url=EVIL) as c:
        for path in ("/api/health", "/api/model", "/", "/openapi.json"):
            assert c.get(path).status_code == 400, path
        assert _post(c, jpeg, origin=EVIL).status_code == 400
        with pytest.raises(WebSocketDenialResponse) as denied:
            with c.websocket_connect(f"ws://evil.example:{PORT}/ws/live", headers={"origin": EVIL}):
                pass
        assert denied.value.status_code == 400
    assert stub.calls == 0
    for base in (HOME, f"http://localhost:{PORT}", f"http://[::1]:{PORT}"):  # loopback names answer
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/health").status_code == 200, base


def test_allowlist_holds_the_bound_address_and_extra_hosts() -> None:
    assert allowed_hosts_for("127.0.0.1") == ("localhost", "127.0.0.1", "[::1]")
    hosts = allowed_hosts_for("192.168.1.5", ["ferlab.lan", "*.example.org", "fe80::1"])
    assert hosts[3:] == ("192.168.1.5", "ferlab.lan", "*.example.org", "[fe80::1]")
    assert "evil.example" not in allowed_hosts_for("0.0.0.0")
    stub = Stub()
    app = create_app(stub, access=Access(allowed_hosts=hosts))
    for base, code in (("http://ferlab.lan:8000", 200), ("http://a.example.org", 200), ("http://evil.example", 400)):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/health").status_code == code, base


# -- Origin: other pages on the user's machine ---------------------------------------------------

@pytest.mark.parametrize("origin, code", [
    (EVIL, 403),  # any other site
    ("http://evil.example", 403),
    (f"http://127.0.0.1:{PORT + 1}", 403),  # another local server's page: same host, other port
    ("null", 403),  # sandboxed frames, file: pages
    ("http://127.0.0.1.evil.example", 403),
    (HOME, 200),  # this server's own page
    (f"http://localhost:{PORT}", 200),  # the same page by another of its names
])
def test_origin_is_checked_against_the_allowlist_not_host(jpeg: bytes, origin: str, code: int) -> None:
    stub = Stub()
    with TestClient(create_app(stub), base_url=HOME) as c:
        r = _post(c, jpeg, origin=origin)
        assert r.status_code == code, r.text
        assert "access-control-allow-origin" not in r.headers
        if code == 403:
            assert "cross-origin request refused" in r.json()["detail"]
            with pytest.raises(WebSocketDisconnect) as refused:
                with c.websocket_connect(f"ws://127.0.0.1:{PORT}/ws/live", headers={"origin": origin}) as ws:
                    ws.receive_json()
            assert refused.value.code == 1008
    assert stub.calls == (1 if code == 200 else 0)


def test_a_cross_origin_form_post_runs_no_inference(jpeg: bytes) -> None:
    """The attack with no preflight: <form enctype=multipart/form-data action=.../api/predict>."""
    stub = Stub()
    with TestClient(create_app(stub), base_url=HOME) as c:
        r = c.post("/api/predict", files={"file": ("x.jpg", jpeg, "image/jpeg")},
                   headers={"origin": "https://evil.example"})
        assert r.status_code == 403
        # a browser that sends no Origin still says where the request came from
        r = c.post("/api/predict", files={"file": ("x.jpg", jpeg, "image/jpeg")},
                   headers={"sec-fetch-site": "cross-site"})
        assert r.status_code == 403
        # scripts and curl (no Origin, no Sec-Fetch-Site) and the page itself are served
        assert c.post("/api/predict", files={"file": ("x.jpg", jpeg, "image/jpeg")}).status_code == 200
    assert stub.calls == 1


# -- token ----------------------------------------------------------------------------------------

def test_token_guards_the_api_and_websocket_not_the_page(jpeg: bytes) -> None:
    stub = Stub()
    app = create_app(stub, access=Access(token="s3cret"))
    with TestClient(app, base_url=HOME) as c:
        for path in ("/", "/static/app.js", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        r = c.get("/api/health")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "token" in r.json()["detail"]
        assert c.get("/api/health", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/health", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/health?token=s3cret").status_code == 200
        assert _post(c, jpeg).status_code == 401 and stub.calls == 0
        assert _post(c, jpeg, authorization="Bearer s3cret").status_code == 200 and stub.calls == 1
        with pytest.raises(WebSocketDisconnect) as refused:
            with c.websocket_connect(f"ws://127.0.0.1:{PORT}/ws/live") as ws:
                ws.receive_json()
        assert refused.value.code == 1008
        with c.websocket_connect(f"ws://127.0.0.1:{PORT}/ws/live?token=s3cret") as ws:
            ws.send_bytes(jpeg)
            assert ws.receive_json()["type"] == "result"
    # the page reads the token from the URL it was opened with and sends it on every call
    js = (Path(create_app.__code__.co_filename).parent / "static" / "app.js").read_text()
    assert 'location.hash.slice(1)).get("token")' in js and "Authorization: `Bearer ${TOKEN}`" in js
    assert "/ws/live${query}" in js


def test_token_comes_from_flag_then_environment_then_is_generated() -> None:
    assert resolve_token("a", {"FERLAB_SERVE_TOKEN": "b"}, True) == ("a", False)
    assert resolve_token(None, {"FERLAB_SERVE_TOKEN": "b"}, False) == ("b", False)
    assert resolve_token(None, {}, False) == (None, False)  # loopback: none unless asked for
    token, generated = resolve_token(None, {}, True)
    assert generated and token and len(token) >= 32


def test_serve_beyond_loopback_requires_and_prints_a_token(tiny_checkpoint: Path) -> None:
    """``ferlab serve --host 0.0.0.0``: the URL it prints carries a fresh token, the API wants
    it, the warning names the accepted hosts."""
    import httpx

    env = {**os.environ, "FERLAB_SERVE_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "ferlab", "serve", "--model", str(tiny_checkpoint), "--port", "0",
                             "--host", "0.0.0.0", "--allowed-host", "ferlab.lan"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert "/#token=" in line, line + proc.stderr.read()  # type: ignore[union-attr]
        url, token = line.split()[2].split("/#token=")
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{url}/api/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
                time.sleep(0.2)
        assert r.status_code == 401
        assert httpx.get(f"{url}/api/health", headers={"authorization": f"Bearer {token}"}).status_code == 200
        assert httpx.get(f"{url}/").status_code == 200  # the page itself needs no token
        assert httpx.get(f"{url}/api/health", headers={"host": "ferlab.lan"}).status_code == 401  # allowed host
        assert httpx.get(f"{url}/api/health", headers={"host": "evil.example"}).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    err = proc.stderr.read()  # type: ignore[union-attr]
    assert "need the token" in err and "ferlab.lan" in err and "Traceback" not in err


# -- upload bounds, on a real server --------------------------------------------------------------

@contextlib.contextmanager
def _serve(app: Any) -> Iterator[int]:
    """The app under uvicorn in a thread on a free loopback port; uvicorn leaves logging alone
    (log_config=None), so its records reach caplog."""
    import uvicorn

    from ferlab.serving.cli import _bind

    sock = _bind("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="info", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def _stall(port: int, length: int = 1_000_000, sent: bytes = b"ab") -> socket.socket:
    """A client that sends headers and a little of its body, then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: image/jpeg\r\n"
              f"Content-Length: {length}\r\n\r\n".encode() + sent)
    return s


def _status(s: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split()[1]) if data.startswith(b"HTTP/") else -1


def test_stalled_uploads_do_not_lock_out_the_photo_api(jpeg: bytes) -> None:
    """16 clients send headers and two bytes and stall (the issue's lock-out): a normal upload
    is still answered at once, and each stalled one gets 408 once it has been idle."""
    import httpx

    stub = Stub()
    with _serve(create_app(stub, Limits(upload_idle_s=1.5))) as port:
        stalls = [_stall(port) for _ in range(16)]
        t0 = time.monotonic()
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", content=jpeg,
                       headers={"content-type": "image/jpeg"}, timeout=30)
        assert r.status_code == 200 and time.monotonic() - t0 < 1.5, r.text
        codes = [_status(s) for s in stalls]
        assert codes == [408] * 16
        for s in stalls:
            s.close()
    assert stub.calls == 1


def test_a_trickling_upload_is_cut_and_uploads_per_client_are_capped(jpeg: bytes) -> None:
    import httpx

    with _serve(create_app(Stub(), Limits(upload_idle_s=1.0, upload_min_kbps=50, max_uploads_per_client=3))) as port:
        trickle = _stall(port, sent=b"x")
        deadline = time.monotonic() + 4
        with contextlib.suppress(OSError):  # the server may close first
            while time.monotonic() < deadline:
                trickle.sendall(b"x")  # a byte every 0.3 s: never idle, far below 50 KiB/s
                time.sleep(0.3)
        assert _status(trickle) == 408
        trickle.close()
        stalls = [_stall(port) for _ in range(3)]
        time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/api/predict"
        r = httpx.post(url, content=jpeg, headers={"content-type": "image/jpeg"}, timeout=30)
        assert r.status_code == 429 and "from your address" in r.json()["detail"] and "retry-after" in r.headers
        assert [_status(s) for s in stalls] == [408] * 3  # their slots free up as they time out
        for s in stalls:
            s.close()
        assert httpx.post(url, content=jpeg, headers={"content-type": "image/jpeg"}, timeout=30).status_code == 200


def test_a_client_that_hangs_up_mid_upload_leaves_no_traceback(jpeg: bytes, caplog: pytest.LogCaptureFixture) -> None:
    import httpx

    caplog.set_level(logging.DEBUG)
    with _serve(create_app(Stub())) as port:
        for body in (jpeg[:1000], b""):  # raw body, and before any body byte
            s = _stall(port, length=len(jpeg), sent=body)
            time.sleep(0.2)
            s.close()
        multipart = _stall(port, length=len(jpeg) + 500, sent=b"--xyz\r\nContent-Disposition: form-data; "
                           b'name="file"; filename="a.jpg"\r\n\r\n' + jpeg[:500])
        multipart.close()
        time.sleep(0.5)
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", content=jpeg, headers={"content-type": "image/jpeg"})
        assert r.status_code == 200  # and the server goes on
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert "Exception in ASGI application" not in caplog.text


def test_pixel_budget_decodes_big_images_one_at_a_time() -> None:
    budget = PixelBudget(100)
    order: list[str] = []
    with budget.hold(80):
        t = threading.Thread(target=lambda: (budget.hold(80).__enter__(), order.append("second")))
        t.start()
        time.sleep(0.2)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    with budget.hold(30), budget.hold(30):  # small ones side by side
        assert budget.used == 60
