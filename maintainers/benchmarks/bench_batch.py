"""``ferlab batch`` on Ray: scaling with local workers, frames/s per worker against ``ferlab
video`` alone, peak memory of a worker on a long video, and a two-node run on this machine.

    .venv/bin/python maintainers/benchmarks/bench_batch.py                       # scaling + baseline + memory (1 min video)
    .venv/bin/python maintainers/benchmarks/bench_batch.py --long-minutes 30     # the 30-minute memory test
    .venv/bin/python maintainers/benchmarks/bench_batch.py --two-node            # also: ray start --head + a second node
    .venv/bin/python maintainers/benchmarks/bench_batch.py --only two-node --json out.json

What it does (all inputs are the bundled clip, 640x360, 275 frames, looped):

1. ``ferlab video`` alone: one process, ``Recognizer.stream`` with the JSONL and CSV sinks on
   one clip, ONNX Runtime with 1 thread (what a batch worker gets) and with all cores.
2. Scaling: ``--clips`` clips of ``--seconds`` s each through ``run_batch`` on a local Ray with
   1 and then 2 CPUs (1 and 2 workers, one thread each). Ray's own start is timed apart;
   frames/s is over the batch (model loading in the workers included). The goal on a 2-core
   machine is >= 1.7x with 2 workers.
3. Segments: one ``--segment-minutes`` video on 2 workers, split into time segments by the
   automatic rule against not split, in the same run.
4. Memory: one worker processes a short clip and then a ``--long-minutes`` video; its peak RSS
   (``ru_maxrss``, recorded in manifest.csv as ``peak_rss_mb``) after each: a flat memory
   profile means the two are nearly equal.
5. Two nodes (``--two-node``): ``ray start --head --num-cpus 1`` and ``ray start --address
   HEAD --num-cpus 1`` as two processes of this script (stopped by their process ids, never
   by ``ray stop``, which would hit every Ray on the machine), then ``run_batch(address=...)``
   with 2 workers: the manifest must show both nodes.

The load average is printed before and after each part: on a shared machine the numbers are
only meaningful when it stays well below the number of cores.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cv2

REPO = Path(__file__).resolve().parents[2]
CLIP = REPO / "src" / "ferlab" / "assets" / "sample_clip.mp4"


def load() -> str:
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "load n/a"
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def make_video(path: Path, seconds: float) -> Path:
    """The bundled clip looped to ``seconds`` (frame rate and size kept)."""
    from ferlab.inference.capture import iter_frames, open_capture

    cap, info = open_capture(CLIP)
    fps = info.fps or 30.0
    frames = [f for _, _, f in iter_frames(cap, info)]
    cap.release()
    n = int(round(seconds * fps))
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        # forwards then backwards, so looping makes no cut at the seam
        k = i % (2 * len(frames) - 2)
        wr.write(frames[k if k < len(frames) else 2 * len(frames) - 2 - k])
    wr.release()
    return path


def baseline(clip: Path, tmp: Path) -> dict[str, Any]:
    from ferlab.inference import Recognizer
    from ferlab.inference.sinks import CsvSink, JsonlSink

    out: dict[str, Any] = {}
    for label, threads in (("1 thread", 1), ("all cores", None)):
        cv2.setNumThreads(threads or os.cpu_count() or 1)  # as a batch worker does (or OpenCV's default)
        rec = Recognizer.from_pretrained(threads=threads)
        t = time.perf_counter()
        s = rec.stream(clip, sinks=[JsonlSink(tmp / "b.jsonl"), CsvSink(tmp / "b.csv")]).run(handle_sigint=False)
        dt = time.perf_counter() - t
        out[label] = {"frames": s.frames, "seconds": round(dt, 2), "fps": round(s.frames / dt, 2)}
        print(f"  ferlab video alone, {label}: {s.frames} frames in {dt:.1f} s = {s.frames / dt:.1f} frames/s | "
              f"{load()}")
    return out


def local_batch(cpus: int, inputs: list[Path], out: Path, **kwargs: Any) -> tuple[Any, float]:
    """``run_batch`` on a local Ray of ``cpus`` CPUs started (and timed) for it alone:
    (result, seconds Ray took to start)."""
    import ray

    from ferlab.batch import run_batch

    t = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    t_ray = time.perf_counter() - t
    try:
        return run_batch(inputs, out, workers=cpus, force=True, **kwargs), t_ray
    finally:
        ray.shutdown()


def scaling(clips: list[Path], tmp: Path, workers_list: list[int]) -> dict[str, Any]:
    res: dict[str, Any] = {}
    for n in workers_list:
        r, t_ray = local_batch(n, clips, tmp / f"scale{n}")
        per_worker = [row["frames"] / row["seconds"] for row in r.done if row["seconds"]]
        fps = r.frames / r.seconds
        res[str(n)] = {"workers": n, "frames": r.frames, "ray_start_s": round(t_ray, 2), "batch_s": round(r.seconds, 2),
                       "fps": round(fps, 2), "fps_per_input_mean": round(sum(per_worker) / len(per_worker), 2),
                       "peak_rss_mb": max(row.get("peak_rss_mb") or 0 for row in r.done), "failed": len(r.failed)}
        print(f"  {n} worker(s): {r.frames} frames in {r.seconds:.1f} s (+{t_ray:.1f} s Ray start) = "
              f"{fps:.1f} frames/s; "
              f"per worker {res[str(n)]['fps_per_input_mean']:.1f} frames/s; peak RSS/worker "
              f"{res[str(n)]['peak_rss_mb']} MB | {load()}")
    if "1" in res and "2" in res:
        ratio = res["2"]["fps"] / res["1"]["fps"]
        res["ratio_2_over_1"] = round(ratio, 3)
        print(f"  scaling 2 workers / 1 worker = {ratio:.2f}x (goal >= 1.7x on an idle 2-core machine)")
    return res


def memory(tmp: Path, minutes: float) -> dict[str, Any]:
    short = make_video(tmp / "mem_short.mp4", 5)
    t = time.perf_counter()
    long = make_video(tmp / "mem_long.mp4", minutes * 60)
    print(f"  wrote a {minutes:g}-minute video in {time.perf_counter() - t:.0f} s ({long.stat().st_size / 1e6:.0f} MB)")
    r, _ = local_batch(1, [short, long], tmp / "mem")
    rows = {Path(row["input"]).name: row for row in r.rows}
    res = {"minutes": minutes, "short_peak_rss_mb": rows["mem_short.mp4"].get("peak_rss_mb"),
           "long_peak_rss_mb": rows["mem_long.mp4"].get("peak_rss_mb"), "long_frames": rows["mem_long.mp4"]["frames"],
           "long_seconds": rows["mem_long.mp4"]["seconds"], "status": rows["mem_long.mp4"]["status"]}
    print(f"  one worker: peak RSS {res['short_peak_rss_mb']} MB after a 5 s clip, {res['long_peak_rss_mb']} MB after "
          f"the {minutes:g}-minute video ({res['long_frames']} frames in {res['long_seconds']:.0f} s) | {load()}")
    return res


def segments(tmp: Path, minutes: float) -> dict[str, Any]:
    """One long video on 2 workers: split into time segments (the automatic rule) against not
    split (``segment_seconds=0``), in the same run: without segments one worker idles."""
    video = make_video(tmp / "seg_long.mp4", minutes * 60)
    res: dict[str, Any] = {"minutes": minutes}
    for label, seconds in (("not split", 0), ("split (automatic)", None)):
        r, _ = local_batch(2, [video], tmp / f"seg_{seconds}", segment_seconds=seconds)
        row = r.rows[0]
        res[label] = {"segments": int(row.get("segments") or 1), "frames": r.frames, "batch_s": round(r.seconds, 2),
                      "fps": round(r.frames / r.seconds, 2), "status": row["status"]}
        print(f"  {label}: {res[label]['segments']} segment(s), {r.frames} frames in {r.seconds:.1f} s = "
              f"{r.frames / r.seconds:.1f} frames/s | {load()}")
    res["ratio_split_over_not"] = round(res["split (automatic)"]["fps"] / res["not split"]["fps"], 3)
    print(f"  one {minutes:g}-minute video on 2 workers: split / not split = {res['ratio_split_over_not']:.2f}x")
    return res


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the ``ray start --block`` we started (it stops its node), then its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it spawned
    except (ProcessLookupError, PermissionError):
        pass


def two_node(clips: list[Path], tmp: Path) -> dict[str, Any]:
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # a token of its own (Ray >= 2.52 authenticates every connection), so this cluster neither
    # reads nor replaces ~/.ray/auth_token, which other Ray users of the machine may share
    token = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    env = {**os.environ, **token, "RAY_USAGE_STATS_ENABLED": "0"}
    logs = tmp / "ray-logs"
    logs.mkdir(exist_ok=True)
    common = ["--num-cpus", "1", "--num-gpus", "0", "--block", "--disable-usage-stats"]
    head = subprocess.Popen([_ray_cli(), "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                             "--include-dashboard", "false", *common],
                            stdout=open(logs / "head.log", "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    procs = [head]
    try:
        deadline = time.time() + 120
        while "Ray runtime started" not in (logs / "head.log").read_text(errors="replace"):
            if time.time() > deadline or head.poll() is not None:
                raise RuntimeError(f"the head did not start: see {logs / 'head.log'}")
            time.sleep(1)
        second = subprocess.Popen([_ray_cli(), "start", "--address", address, "--node-ip-address", "127.0.0.1",
                                   *common], stdout=open(logs / "node2.log", "w"), stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
        procs.append(second)
        deadline = time.time() + 120
        while "Ray runtime started" not in (logs / "node2.log").read_text(errors="replace"):
            if time.time() > deadline or second.poll() is not None:
                raise RuntimeError(f"the second node did not start: see {logs / 'node2.log'}")
            time.sleep(1)
        out = tmp / "twonode"
        cmd = [sys.executable, "-m", "ferlab", "batch", *map(str, clips), "--out", str(out), "--address", address,
               "--workers", "2", "--force", "--quiet"]
        print("  $ RAY_AUTH_MODE=token RAY_AUTH_TOKEN=... " + " ".join(cmd[2:]))
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        dt = time.perf_counter() - t
        print("    " + "\n    ".join(proc.stdout.strip().splitlines()[-3:]))
        if proc.returncode:
            print("    " + proc.stderr.strip()[-2000:])
        from ferlab.batch.manifest import read_csv

        rows = read_csv(out / "manifest.csv") if (out / "manifest.csv").exists() else []
        used = sorted({r["node"] for r in rows})
        frames = sum(int(r["frames"]) for r in rows if r["status"] == "done")
        res = {"address": address, "rc": proc.returncode, "nodes_used": len(used),
               "done": sum(r["status"] == "done" for r in rows), "failed": sum(r["status"] != "done" for r in rows),
               "frames": frames, "seconds": round(dt, 2)}
        print(f"  two nodes at {address}: exit {proc.returncode}, {res['done']} done, {res['failed']} failed, on "
              f"{len(used)} node(s) {[u[:8] for u in used]}; {frames} frames in {dt:.1f} s (CLI start included) | "
              f"{load()}")
        return res
    finally:
        for p in reversed(procs):
            _stop(p)
        # `ray start` leaves its address for later ray.init() calls to connect to: not a stopped one of ours
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        try:
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()
        except OSError:
            pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=4, help="clips in the scaling run (default 4)")
    ap.add_argument("--seconds", type=float, default=10, help="length of each clip (default 10 s = 300 frames)")
    ap.add_argument("--long-minutes", type=float, default=1.0, help="the long video of the memory test (default 1)")
    ap.add_argument("--two-node", action="store_true", help="also simulate a two-node cluster")
    ap.add_argument("--segment-minutes", type=float, default=2.5,
                    help="the long video split into time segments on 2 workers (default 2.5: the automatic rule cuts it in 2)")
    ap.add_argument("--only", choices=["baseline", "scaling", "segments", "memory", "two-node"], action="append",
                    help="run only these parts (repeatable)")
    ap.add_argument("--json", default=None, help="write the numbers here")
    ap.add_argument("--keep", default=None, help="work in this folder and keep it")
    args = ap.parse_args()
    parts = set(args.only or ["baseline", "scaling", "segments", "memory"] + (["two-node"] if args.two_node else []))
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_batch_"))
    tmp.mkdir(parents=True, exist_ok=True)
    import ray

    results: dict[str, Any] = {"cpus": os.cpu_count(), "ray": ray.__version__, "load_before": load()}
    print(f"bench_batch: Ray {ray.__version__} | {load()} | work in {tmp}")
    print("NOTE: with other jobs on the machine these numbers are not meaningful; measure on an idle machine.")
    try:
        clips = [make_video(tmp / f"clip{i}.mp4", args.seconds) for i in range(args.clips)]
        if "baseline" in parts:
            print("baseline:")
            results["baseline"] = baseline(clips[0], tmp)
        if "scaling" in parts:
            print("scaling:")
            results["scaling"] = scaling(clips, tmp, [1, 2])
        if "segments" in parts:
            print("segments:")
            results["segments"] = segments(tmp, args.segment_minutes)
        if "memory" in parts:
            print("memory:")
            results["memory"] = memory(tmp, args.long_minutes)
        if "two-node" in parts:
            print("two nodes:")
            results["two_node"] = two_node(clips[:2], tmp)
    finally:
        results["load_after"] = load()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"done | {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
