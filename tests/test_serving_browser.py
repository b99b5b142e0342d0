"""End to end in a real headless Chromium: the page asks for the camera (a fake one playing
frames of the sample clip), streams JPEGs over the websocket, and draws boxes and labels.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install chromium
chromium-driver``); skipped with the reason when they are missing. It runs in the default
suite because it is the only test that exercises the page's JavaScript.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ferlab.constants import CLASS_NAMES

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# Frames of the sample clip where Haar finds a ~55 px face at 320x180 (checked by hand), so
# the fake camera shows a face on every loop; small frames keep detection fast on busy CPUs.
CLIP_FRAMES = range(125, 170)
CLIP_SIZE = (320, 180)

pytestmark = pytest.mark.browser


def _requirements() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium not installed (pip install selenium)")
    pytest.importorskip("uvicorn")


def write_y4m(video: Path, target: Path, frames: range, size: tuple[int, int], fps: int = 15) -> int:
    """Raw YUV4MPEG2 (4:2:0) for Chromium's fake camera, which plays and loops such files."""
    cap = cv2.VideoCapture(str(video))
    cap.set(cv2.CAP_PROP_POS_FRAMES, frames.start)
    w, h = size
    n = 0
    with open(target, "wb") as fh:
        fh.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in frames:
            ok, frame = cap.read()
            if not ok:
                break
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(small, cv2.COLOR_BGR2YUV_I420).tobytes())  # Y, U, V planes
            n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def chrome(samples_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Headless Chromium whose fake camera plays the clip, started in a background thread so
    its slow cold start overlaps with loading the model for the server."""
    _requirements()
    tmp_path = tmp_path_factory.mktemp("chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    clip = tmp_path / "clip.y4m"
    assert write_y4m(samples_dir / "short_hamilton_clip.mp4", clip, CLIP_FRAMES, CLIP_SIZE) == len(CLIP_FRAMES)
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                "--no-proxy-server", "--disable-extensions", "--mute-audio",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}", f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1200,900"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    def start() -> Any:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
        driver.set_page_load_timeout(45)
        return driver

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(start)
        yield future
        driver = future.result(timeout=60)
        driver.quit()


def _serve(app: Any) -> Any:
    """``app`` under uvicorn in a background thread on a free loopback port: (url, stop)."""
    import uvicorn

    from ferlab.serving.cli import _bind

    sock = _bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)

    def stop() -> None:
        srv.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


def _recognizer(request: pytest.FixtureRequest) -> Any:
    """A shipped model when there is one, else the random tiny checkpoint (boxes come from
    the detector)."""
    from ferlab.inference import Recognizer
    from ferlab.models.hub import shipped_models

    model = None if shipped_models() else request.getfixturevalue("tiny_checkpoint")
    return Recognizer.from_pretrained(model)


@pytest.fixture(scope="module")
def server(chrome: Any, request: pytest.FixtureRequest) -> Any:
    """ferlab's app under uvicorn in a background thread on a free loopback port."""
    _requirements()
    from ferlab.serving import Limits, create_app

    url, stop = _serve(create_app(_recognizer(request), Limits(max_clients=2)))
    yield url
    stop()


def _hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


# Runs inside the page in one synchronous go, so no new result can clear the canvas between
# reading the last drawn faces and reading its pixels; it then pauses the page, which freezes
# it on the analysed frame with the same boxes, for the screenshot.
_PROBE = """
const last = window.ferlabLast;
if (!last || last.mode !== 'live' || !last.drawn.length) return null;
const c = document.getElementById(last.canvas);
const ctx = c.getContext('2d');
const d = last.drawn[0];
const [x, y, w, h] = d.box.map(Math.round);
const edge = Array.from(ctx.getImageData(x, y + Math.round(h / 2), 1, 1).data);
const inside = Array.from(ctx.getImageData(x + Math.round(w / 2), y + Math.round(h / 2), 1, 1).data);
const all = ctx.getImageData(0, 0, c.width, c.height).data;
let painted = 0;
for (let i = 3; i < all.length; i += 4) if (all[i] > 0) painted++;
const out = {drawn: last.drawn, faces: last.faces, layout: last.layout, width: last.width, height: last.height,
             canvas: [c.width, c.height], dataFaces: c.dataset.faces, edge, inside, painted, rtt: last.rttMs};
document.getElementById('live-pause').click();
out.status = document.getElementById('live-status').textContent;
out.paused = document.getElementById('live-pause').textContent;
return out;
"""


def test_live_page_draws_faces_in_chromium(chrome: Any, server: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chrome.result(timeout=60)
    driver.get(server + "/")
    WebDriverWait(driver, 15).until(lambda d: "model " in d.find_element(By.ID, "model-info").text)
    driver.find_element(By.ID, "live-start").click()
    probe = WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: d.execute_script(_PROBE))
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "serve_e2e.png"))
    rtt_text = driver.find_element(By.ID, "stat-rtt").text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]

    # what the server returned for the frame, and what the page drew from it
    assert (probe["width"], probe["height"]) == CLIP_SIZE
    assert len(probe["faces"]) == len(probe["drawn"]) == int(probe["dataFaces"]) >= 1
    scale = probe["canvas"][0] / CLIP_SIZE[0]  # the overlay is drawn at its on-screen size
    assert probe["canvas"][1] / CLIP_SIZE[1] == pytest.approx(scale, rel=0.02)
    for face, drawn, tag in zip(probe["faces"], probe["drawn"], probe["layout"]["tags"], strict=True):
        assert drawn["box"] == pytest.approx([v * scale for v in face["box"]])
        assert drawn["tag"] == pytest.approx([v * scale for v in tag["rect"]])  # where the server put it
        assert drawn["label"] == face["label"] in CLASS_NAMES
        assert isinstance(drawn["track_id"], int) and drawn["track_id"] == face["track_id"]
        assert face["smoothed"] is not None and set(face["smoothed"]) == set(CLASS_NAMES)
        x, y, w, h = face["box"]
        assert w >= 30 and h >= 30 and x + w <= CLIP_SIZE[0] and y + h <= CLIP_SIZE[1]
    # the canvas pixels: the box's left edge is painted in the label's colour, its centre is
    # left transparent (the video shows through), and labels/bars cover more than the outline
    r, g, b, a = probe["edge"]
    assert a == 255
    assert np.abs(np.array([r, g, b]) - _hex_rgb(probe["drawn"][0]["color"])).max() <= 8
    assert probe["inside"][3] == 0
    x, y, w, h = probe["drawn"][0]["box"]
    assert probe["painted"] > 2 * (w + h) * 2
    assert probe["rtt"] > 0 and float(rtt_text) > 0
    assert probe["paused"] == "Resume" and probe["status"].startswith("Paused")
    assert not errors, errors
    # and the screenshot (video + overlay as a user sees it) shows the box colour
    shot = cv2.imread(str(ARTIFACTS / "serve_e2e.png"))
    assert shot is not None
    r, g, b = _hex_rgb(probe["drawn"][0]["color"])
    near = np.abs(shot.astype(int) - np.array([b, g, r])).max(axis=2) <= 12
    assert near.sum() > 2 * (w + h)



def test_the_page_takes_the_token_from_its_url_in_chromium(chrome: Any, request: pytest.FixtureRequest) -> None:
    """A server that needs a token (as beyond loopback): the page opened without it says so;
    opened with the URL ``ferlab serve`` prints (``/#token=...``) it loads the model, runs the
    live websocket, keeps the token across a reload and takes it out of the address bar."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ferlab.serving import Limits, create_app
    from ferlab.serving.guards import Access

    url, stop = _serve(create_app(_recognizer(request), Limits(max_clients=2), access=Access(token="tok-3x4mple")))
    driver = chrome.result(timeout=60)
    try:
        driver.get(url + "/")
        WebDriverWait(driver, 15).until(lambda d: "needs its token" in d.find_element(By.ID, "model-info").text)
        driver.get("about:blank")  # a new document: the page reads its URL when it loads
        driver.get(url + "/#token=tok-3x4mple")
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "model-info").text.startswith("model "))
        assert driver.execute_script("return location.hash") == ""
        driver.refresh()
        WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "model-info").text.startswith("model "))
        driver.find_element(By.ID, "live-start").click()
        last = WebDriverWait(driver, 30, poll_frequency=0.2).until(
            lambda d: d.execute_script("return window.ferlabLast && window.ferlabLast.mode === 'live' "
                                       "? window.ferlabLast : null"))
        assert last["width"] == CLIP_SIZE[0]
        driver.find_element(By.ID, "live-stop").click()
    finally:
        driver.get("about:blank")
        driver.get_log("browser")  # the 401s of the token-less try were expected: not the next test's
        stop()


def _short_mp4(samples_dir: Path, target: Path) -> Path:
    cap = cv2.VideoCapture(str(samples_dir / "short_hamilton_clip.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, CLIP_FRAMES.start)
    out = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, CLIP_SIZE)
    for _ in range(12):
        ok, frame = cap.read()
        assert ok
        out.write(cv2.resize(frame, CLIP_SIZE, interpolation=cv2.INTER_AREA))
    out.release()
    cap.release()
    return target


def test_upload_photo_and_video_in_chromium(chrome: Any, server: str, samples_dir: Path, tmp_path: Path) -> None:
    """Upload mode: a photo comes back annotated with its JSON; a video gives the emotion
    plot and a CSV with the same columns as ``ferlab video --csv``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ferlab.inference.sinks import csv_header

    driver = chrome.result(timeout=60)
    driver.get(server + "/")
    driver.find_element(By.ID, "tab-upload").click()
    assert driver.find_element(By.ID, "upload").is_displayed() and not driver.find_element(By.ID, "live").is_displayed()
    driver.execute_script("document.getElementById('file-input').style.display = 'block'")
    file_input = driver.find_element(By.ID, "file-input")

    file_input.send_keys(str(samples_dir / "photos" / "obama_small.jpg"))
    last = WebDriverWait(driver, 30, poll_frequency=0.2).until(lambda d: d.execute_script(
        "const l = window.ferlabLast; return l && l.mode === 'image' ? l : null;"))
    assert (last["width"], last["height"]) == (320, 240) and len(last["drawn"]) >= 1
    canvas = driver.find_element(By.ID, "image-canvas")
    assert (canvas.get_attribute("width"), canvas.get_attribute("height")) == ("320", "240")
    shown = json.loads(driver.find_element(By.ID, "json-out").get_attribute("textContent"))
    assert shown["faces"] == last["faces"] and shown["file"] == "obama_small.jpg"
    assert [d["tag"] for d in last["drawn"]] == [t["rect"] for t in shown["layout"]["tags"]]  # drawn as sent
    assert driver.find_element(By.ID, "dl-json").get_attribute("href").startswith("blob:")

    file_input.send_keys(str(_short_mp4(samples_dir, tmp_path / "clip.mp4")))
    WebDriverWait(driver, 60, poll_frequency=0.2).until(
        lambda d: "frames analysed" in d.find_element(By.ID, "upload-status").text)
    csv_text = driver.execute_async_script(
        "const done = arguments[0];"
        "fetch(document.getElementById('dl-csv').href).then(r => r.text()).then(done, e => done(String(e)));")
    rows = [line.split(",") for line in csv_text.strip().splitlines()]
    assert rows[0] == csv_header(list(CLASS_NAMES))
    assert len(rows) >= 2 and all(len(r) == len(rows[0]) for r in rows)
    assert {r[7] for r in rows[1:]} <= set(CLASS_NAMES)
    # the plot has one line per emotion for the selected track: count pixels of those colours
    painted = driver.execute_script("""
        const c = document.getElementById('plot');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const want = [[230,40,40],[60,160,60],[160,60,160],[255,200,0],[200,200,200],[30,120,220],[255,140,0]];
        const hits = want.map(() => 0);
        for (let i = 0; i < d.length; i += 4)
          want.forEach((w, k) => {
            if (Math.abs(d[i] - w[0]) + Math.abs(d[i + 1] - w[1]) + Math.abs(d[i + 2] - w[2]) < 30) hits[k]++;
          });
        return hits;""")
    assert all(n > 20 for n in painted), painted  # every class has a line (and a legend swatch)
    assert driver.find_element(By.ID, "track-select").get_attribute("value") != ""
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "clip.mp4" not in e["message"]]
    assert not errors, errors


# drawFaces on a canvas of its own, with faces and layout the way the server's JSON has them;
# returns what was drawn and whether paint landed in the middle of each label and panel.
_DRAW_CROWD = """
const [faces, layout, W, H, scale] = arguments;
const c = document.createElement('canvas');
c.width = W; c.height = H;
const ctx = c.getContext('2d');
const drawn = drawFaces(ctx, faces, layout, scale);
const alphaAt = (r) => ctx.getImageData(Math.floor(r[0] + r[2] / 2), Math.floor(r[1] + r[3] / 2), 1, 1).data[3];
return {drawn, classes, tagAlpha: drawn.map((d) => alphaAt(d.tag)),
        panelAlpha: drawn.map((d) => alphaAt(d.panel.rect))};
"""


def _synthetic_face(box: list[int], track_id: int, seed: int, uncertain: bool = False) -> dict[str, Any]:
    p = np.random.default_rng(seed).dirichlet(np.ones(len(CLASS_NAMES)))
    probs = {c: float(v) for c, v in zip(CLASS_NAMES, p, strict=True)}
    top = CLASS_NAMES[int(np.argmax(p))]
    return {"box": box, "track_id": track_id, "label": top, "confidence": probs[top], "probs": probs,
            "smoothed": probs, "uncertain": uncertain, "uncertainty": 0.9 if uncertain else 0.1}


def _server_layout(faces: list[dict[str, Any]], W: int, H: int) -> dict[str, Any]:
    """The layout the server sends for these faces on a W x H frame."""
    from ferlab.inference.overlay import layout_json
    from ferlab.inference.results import Face

    return layout_json((H, W), [Face(tuple(f["box"]), np.array([f["probs"][c] for c in CLASS_NAMES]), CLASS_NAMES,
                                     track_id=f["track_id"], smoothed=np.array([f["smoothed"][c] for c in CLASS_NAMES]),
                                     uncertainty=f["uncertainty"], uncertain=f["uncertain"]) for f in faces])


def test_page_draws_the_layout_the_server_sends_in_chromium(chrome: Any, server: str) -> None:
    """The crowded-frame layout is computed once, by the server (ferlab.inference.overlay,
    as for every annotated frame; its invariants are tests/test_overlay.py's): the page draws
    each face's label and distribution where the layout puts them, at any canvas scale."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chrome.result(timeout=60)
    driver.get(server + "/")
    WebDriverWait(driver, 15).until(lambda d: "model " in d.find_element(By.ID, "model-info").text)

    W, H = 640, 360
    boxes = [[10 + k * 78, 60 + (k % 2) * 10, 70, 70] for k in range(8)]  # an audience: no room for 8 panels
    faces = [_synthetic_face(b, k + 1, seed=k, uncertain=(k == 3)) for k, b in enumerate(boxes)]
    layout = _server_layout(faces, W, H)
    assert any(p["kind"] != "full" for p in layout["panels"])  # the crowd needs the smaller forms
    for scale in (1, 1.5):
        out = driver.execute_script(_DRAW_CROWD, faces, layout, int(W * scale), int(H * scale), scale)
        drawn = out["drawn"]
        assert out["classes"] == list(CLASS_NAMES) and len(drawn) == len(faces)
        for face, d, tag, panel in zip(faces, drawn, layout["tags"], layout["panels"], strict=True):
            assert d["box"] == pytest.approx([v * scale for v in face["box"]]) and d["label"] == face["label"]
            assert d["track_id"] == face["track_id"] and d["confidence"] == pytest.approx(face["confidence"])
            assert d["text"] == tag["text"] and d["tag"] == pytest.approx([v * scale for v in tag["rect"]])
            assert d["panel"]["kind"] == panel["kind"]
            assert d["panel"]["rect"] == pytest.approx([v * scale for v in panel["rect"]])
        assert all(a == 255 for a in out["tagAlpha"]) and all(a > 0 for a in out["panelAlpha"]), out
    # the uncertain face is grey, says so, and keeps its distribution
    assert drawn[3]["uncertain"] is True and drawn[3]["color"] == "#808080" and "uncertain" in drawn[3]["text"]
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
