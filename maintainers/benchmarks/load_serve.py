"""Load test for ``ferlab serve``: N live websocket clients sending real frames, on loopback.

Starts the real command in a subprocess on a free port, connects ``--clients`` clients that
behave like the page (one frame in flight, next frame when the result is back), runs for
``--seconds``, and reports round-trip latency (p50/p95/max), results per second per client,
and the server's resident memory before and after the run. Memory must stay flat: the run
fails (exit 1) if RSS grew by more than ``--max-rss-growth-mb``. It also checks that one
client over ``--max-clients`` is turned away with a reason.

    .venv/bin/python maintainers/benchmarks/load_serve.py --seconds 20            # 8 clients, 640x360 frames
    .venv/bin/python maintainers/benchmarks/load_serve.py --seconds 10 --width 320 --json out.json

Bounded on purpose (at most 64 clients, 300 s, loopback only) so it cannot be turned into a
load generator against another machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FERLAB_SHARED", ROOT.parent / "shared"))
CLIPS = (SHARED / "samples" / "short_hamilton_clip.mp4", ROOT / "src" / "ferlab" / "assets" / "sample_clip.mp4")
TINY_MODEL_CFG = {"name": "fernet", "widths": [8, 16, 16, 16], "depths": [0, 0, 0, 0],
                  "head": [16], "dropout": [0.0, 0.0]}


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"cannot read the memory of process {pid}")


def load_frames(clip: Path, count: int, width: int) -> list[bytes]:
    """``count`` frames spread over the clip, resized to ``width`` and JPEG-encoded once, as
    the page sends them (quality 80)."""
    cap = cv2.VideoCapture(str(clip))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or count
    wanted = set(np.linspace(0, total - 1, count).astype(int).tolist())
    frames, index = [], 0
    while len(frames) < len(wanted):
        ok, frame = cap.read()
        if not ok:
            break
        if index in wanted:
            if frame.shape[1] != width:
                frame = cv2.resize(frame, (width, round(frame.shape[0] * width / frame.shape[1])),
                                   interpolation=cv2.INTER_AREA)
            frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes())
        index += 1
    cap.release()
    if not frames:
        raise SystemExit(f"no frames could be read from {clip}")
    return frames


def default_model(tmp: Path) -> str:
    """The best shipped model, else a random tiny checkpoint: the detector still finds the
    faces, and the classifier's cost is a small part of a frame's either way."""
    from ferlab.models.hub import shipped_models

    if shipped_models():
        return ""
    import torch

    from ferlab.research.nets import create_from_config, save_checkpoint

    torch.manual_seed(0)
    model = create_from_config(dict(TINY_MODEL_CFG)).eval()
    return str(save_checkpoint(tmp / "tiny.safetensors", model, {"model": dict(TINY_MODEL_CFG), "metrics": {}}))


def start_server(model: str, max_clients: int, extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "ferlab", "serve", "--port", "0", "--max-clients", str(max_clients), *extra]
    if model:
        cmd += ["--model", model]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("ferlab serve: http://127.0.0.1:"):
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read()}")  # type: ignore[union-attr]
    url = line.split()[2].rstrip("/")
    try:
        wait_healthy(url, proc, 120)
    except RuntimeError as exc:
        proc.kill()
        raise SystemExit(str(exc)) from None
    return proc, url


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    """Return once ``/api/health`` of a starting ``ferlab serve`` says ok (RuntimeError if not)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=5) as r:
                if json.load(r)["status"] == "ok":
                    return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not answer /api/health") from None
            time.sleep(0.2)


async def client(url: str, frames: list[bytes], offset: int, warmup: int, start: asyncio.Event,
                 stop_at: list[float], warmed: asyncio.Event, ready: list[int]) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    lat: list[float] = []
    faces = 0
    dropped = 0
    errors = 0
    i = offset
    async with connect(url, max_size=2**22, open_timeout=60) as ws:
        async def one() -> dict[str, Any]:
            nonlocal i
            t0 = time.perf_counter()
            await ws.send(frames[i % len(frames)])
            msg = json.loads(await ws.recv())
            i += 1
            msg["_rtt"] = (time.perf_counter() - t0) * 1000
            return msg

        for _ in range(warmup):
            await one()
        ready[0] += 1
        if ready[0] == ready[1]:
            warmed.set()
        await start.wait()
        t_start = time.monotonic()
        while time.monotonic() < stop_at[0]:
            msg = await one()
            if msg["type"] != "result":
                errors += 1
                continue
            lat.append(msg["_rtt"])
            faces += len(msg["faces"])
            dropped = msg["dropped"]
        elapsed = time.monotonic() - t_start
    return {"latencies": lat, "results": len(lat), "fps": len(lat) / elapsed if elapsed else 0.0,
            "faces": faces, "dropped": dropped, "errors": errors}


async def extra_client(url: str) -> str:
    """One client over the limit must be closed with a reason, not queued."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    first: dict[str, Any] = {}
    async with connect(url, open_timeout=30) as ws:
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            code, reason = (rcvd.code, rcvd.reason) if rcvd else ("?", "")
            return f"rejected: code {code}, {reason!r} (message: {first.get('error')!r})"
        except asyncio.TimeoutError:
            return "NOT rejected (still open after 10 s)"
    return "closed without a reason"


async def run(url: str, frames: list[bytes], n: int, seconds: float, warmup: int, pid: int) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + "/ws/live"
    start, warmed = asyncio.Event(), asyncio.Event()
    stop_at = [0.0]
    ready = [0, n]
    tasks = [asyncio.ensure_future(client(ws_url, frames, k * 7, warmup, start, stop_at, warmed, ready))
             for k in range(n)]
    await asyncio.wait_for(warmed.wait(), timeout=300)
    over_limit = await extra_client(ws_url)
    rss_before = rss_mb(pid)
    samples = [rss_before]
    stop_at[0] = time.monotonic() + seconds
    start.set()
    while time.monotonic() < stop_at[0]:
        await asyncio.sleep(min(1.0, max(0.0, stop_at[0] - time.monotonic())))
        samples.append(rss_mb(pid))
    results = await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)  # let the server drop the finished sessions
    rss_after = rss_mb(pid)
    return {"clients": results, "rss_before": rss_before, "rss_after": rss_after, "rss_peak": max(samples),
            "over_limit": over_limit}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8, help="concurrent live clients (1-64, default 8)")
    p.add_argument("--seconds", type=float, default=20.0, help="measured run length (max 300)")
    p.add_argument("--warmup", type=int, default=3, help="frames per client before measuring")
    p.add_argument("--width", type=int, default=640, help="frame width sent (the page sends up to 640)")
    p.add_argument("--frames", type=int, default=40, help="distinct frames taken from the clip")
    p.add_argument("--clip", type=Path, default=None, help="video to take frames from")
    p.add_argument("--model", default=None, help="model for the server (default: best shipped, else random tiny)")
    p.add_argument("--max-rss-growth-mb", type=float, default=30.0, help="fail if server RSS grows more")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    p.add_argument("server_args", nargs=argparse.REMAINDER, help="after --: extra `ferlab serve` flags")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 0 < args.seconds <= 300:
        p.error("--clients must be 1-64 and --seconds 0-300")
    clip = args.clip or next((c for c in CLIPS if c.is_file()), None)
    if clip is None:
        p.error("no sample clip found; pass --clip")
    extra = [a for a in args.server_args if a != "--"]

    frames = load_frames(clip, args.frames, args.width)
    with tempfile.TemporaryDirectory(prefix="ferlab-load-") as tmp:
        model = args.model if args.model is not None else default_model(Path(tmp))
        proc, url = start_server(model, args.clients, extra)
        try:
            out = asyncio.run(run(url, frames, args.clients, args.seconds, args.warmup, proc.pid))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    lat = np.concatenate([np.asarray(c["latencies"], float) for c in out["clients"]] or [np.zeros(0)])
    fps = [c["fps"] for c in out["clients"]]
    delta = out["rss_after"] - out["rss_before"]
    h, w = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
    summary = {
        "clients": args.clients, "seconds": args.seconds, "frame_size": [w, h], "clip": clip.name,
        "results": int(lat.size), "errors": sum(c["errors"] for c in out["clients"]),
        "faces_per_result": round(sum(c["faces"] for c in out["clients"]) / max(1, lat.size), 2),
        "latency_ms": {k: round(float(np.percentile(lat, q)), 1) if lat.size else None
                       for k, q in (("p50", 50), ("p95", 95), ("max", 100))},
        "fps_per_client": {"min": round(min(fps), 2), "mean": round(float(np.mean(fps)), 2), "max": round(max(fps), 2)},
        "total_fps": round(sum(fps), 2), "server_dropped": sum(c["dropped"] for c in out["clients"]),
        "rss_mb": {"before": round(out["rss_before"], 1), "after": round(out["rss_after"], 1),
                   "peak": round(out["rss_peak"], 1), "delta": round(delta, 1)},
        "over_limit_client": out["over_limit"], "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"ferlab serve load test: {args.clients} clients x {args.seconds:g} s, {w}x{h} JPEG frames from {clip.name}")
    print(f"  results        {summary['results']} ({summary['errors']} errors), "
          f"{summary['faces_per_result']} faces/result")
    print(f"  latency ms     p50 {summary['latency_ms']['p50']}  p95 {summary['latency_ms']['p95']}  "
          f"max {summary['latency_ms']['max']}")
    print(f"  fps per client min {summary['fps_per_client']['min']}  mean {summary['fps_per_client']['mean']}  "
          f"max {summary['fps_per_client']['max']}  (total {summary['total_fps']})")
    print(f"  server RSS MB  before {summary['rss_mb']['before']}  after {summary['rss_mb']['after']}  "
          f"peak {summary['rss_mb']['peak']}  delta {delta:+.1f}")
    print(f"  client #{args.clients + 1}      {summary['over_limit_client']}")
    print(f"  machine        {summary['cpu_count']} CPUs, load average {summary['load_avg_1m']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    ok = delta <= args.max_rss_growth_mb and summary["over_limit_client"].startswith("rejected") and lat.size > 0
    if delta > args.max_rss_growth_mb:
        print(f"FAIL: server memory grew {delta:.1f} MB (> {args.max_rss_growth_mb:g} MB)", file=sys.stderr)
    if not summary["over_limit_client"].startswith("rejected"):
        print("FAIL: the client over --max-clients was not turned away", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
