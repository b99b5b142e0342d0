"""What the fault suite (tests/test_faults.py) and its figures (maintainers/benchmarks/bench_faults.py)
share: the seed corpus of real media, the byte mutations applied to it, decompression bombs
made in a second, the child process a training kill hits, and measuring a command's peak
memory. Not a test module (no ``test_`` prefix): imported by both.
"""
from __future__ import annotations

import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "src" / "ferlab" / "assets" / "sample_clip.mp4"

# -- corpus and mutations -------------------------------------------------------------------------

OPS = ("flip", "set", "cut", "insert", "delete", "repeat", "header")


def apply_ops(data: bytes, ops: Sequence[tuple[str, float, int]]) -> bytes:
    """``data`` with each (operation, position as a fraction of the length, argument) applied:
    flip a bit, set a byte, cut the file there, insert bytes, delete a run, repeat a run
    (duplicated chunks and markers), or overwrite a byte of the first 64 (headers: sizes,
    chunk lengths, markers). Deterministic, so a failing case reproduces from its ops."""
    buf = bytearray(data)
    for op, where, arg in ops:
        n = len(buf)
        if n == 0:
            break
        i = min(n - 1, int(where * n))
        if op == "flip":
            buf[i] ^= 1 << (arg % 8)
        elif op == "set":
            buf[i] = arg % 256
        elif op == "cut":
            del buf[max(1, i):]
        elif op == "insert":
            buf[i:i] = random.Random(arg).randbytes(1 + arg % 64)
        elif op == "delete":
            del buf[i:i + 1 + arg % 256]
        elif op == "repeat":
            buf[i:i] = buf[i:i + 1 + arg % 512]
        elif op == "header":
            buf[min(n - 1, int(where * 64))] = arg % 256
    return bytes(buf)


def random_ops(rng: random.Random, k_max: int = 6) -> list[tuple[str, float, int]]:
    return [(rng.choice(OPS), rng.random(), rng.randrange(1 << 16)) for _ in range(rng.randint(1, k_max))]


def seed_images(photo: Path, side: int = 160) -> dict[str, bytes]:
    """One real photo in every format the header check knows, small so a decode is ~1 ms:
    JPEG (as shot, EXIF and all), and PNG, WebP, BMP, TIFF re-encodings at ``side`` px."""
    import cv2

    raw = photo.read_bytes()
    image = cv2.imread(str(photo))
    scale = side / max(image.shape[:2])
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out = {"jpeg-original": raw}
    for ext in (".jpg", ".png", ".webp", ".bmp", ".tiff"):
        ok, buf = cv2.imencode(ext, small)
        assert ok, ext
        out[ext[1:]] = buf.tobytes()
    return out


def seed_video(path: Path, frames: int = 8, size: tuple[int, int] = (160, 90)) -> bytes:
    """A short real MP4 (mp4v) cut from the bundled clip: a face from the first frames."""
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 125)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, size)
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        out.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    out.release()
    cap.release()
    return path.read_bytes()


# -- decompression bombs --------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(width: int, height: int, channels: int = 1) -> bytes:
    """A valid PNG of ``width`` x ``height`` black pixels (gray, or RGB with channels=3),
    made in well under a second: the deflate block of a run of zero rows is compressed once
    and repeated (a full flush makes blocks independent), and the Adler-32 of n zero bytes is
    ((n mod 65521) << 16) | 1. 30000 x 30000 gray is ~1 MB that decodes to 900 MB (2.7 GB as
    the BGR image ferlab would make of it)."""
    row = 1 + width * channels  # filter byte + pixels
    rows_per_block = max(1, min(height, (32 << 20) // row))
    full, rest = divmod(height, rows_per_block)
    raw = -15  # raw deflate: the zlib wrapper is written here

    def block(rows: int) -> bytes:
        c = zlib.compressobj(9, zlib.DEFLATED, raw)
        return c.compress(bytes(row * rows)) + c.flush(zlib.Z_FULL_FLUSH)

    body = block(rows_per_block) * full + (block(rest) if rest else b"")
    end = zlib.compressobj(9, zlib.DEFLATED, raw)
    n = row * height
    stream = b"\x78\x01" + body + end.compress(b"") + end.flush() + struct.pack(">I", ((n % 65521) << 16) | 1)
    color = {1: 0, 3: 2}[channels]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


# -- peak memory of a command ---------------------------------------------------------------------

# The peak is VmHWM, the high-water mark of this process's own memory map, which exec starts
# afresh; ru_maxrss would not do: Linux keeps it across fork + exec, so a child of a big
# parent (pytest holding FER2013) would report the parent's size.
_MEASURE = ("import resource, sys\n"
            "from ferlab.cli import main\n"
            "def peak():\n"
            "    try:\n"
            "        for line in open('/proc/self/status'):\n"
            "            if line.startswith('VmHWM:'):\n"
            "                return int(line.split()[1]) / 1024\n"
            "    except OSError:\n"
            "        pass\n"
            "    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
            "try:\n"
            "    rc = main(sys.argv[1:])\n"
            "finally:\n"
            "    print(f'PEAK_RSS_MB {peak():.0f}', file=sys.stderr)\n"
            "sys.exit(rc)\n")


def run_cli(args: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 300,
            fsize: int | None = None, pythonpath: str | None = None) -> tuple[int, str, str, float, float]:
    """``ferlab ARGS`` in a child: (exit code, stdout, stderr without the peak line, peak RSS
    in MB, seconds). ``fsize``: the child may write files of at most that many bytes
    (RLIMIT_FSIZE, what a full disk looks like to a writer: EFBIG instead of ENOSPC)."""
    import resource

    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full_env = {**os.environ, **(env or {}), "PYTHONWARNINGS": "ignore"}
    if pythonpath:
        full_env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, preexec_fn=limit)
    seconds = time.perf_counter() - t0
    lines = proc.stderr.splitlines()
    peak = next((float(x.split()[1]) for x in lines if x.startswith("PEAK_RSS_MB")), float("nan"))
    err = "\n".join(x for x in lines if not x.startswith("PEAK_RSS_MB"))
    return proc.returncode, proc.stdout, err, peak, seconds


# -- training killed at any instant ---------------------------------------------------------------

# The child a kill hits: trains a run (resume or not). FERLAB_TEST_HOLD=NAME:K makes it stop,
# print HOLD and sleep just before renaming the K-th temporary file of NAME into place (the
# file fully written, the rename not done): a kill there is a kill "while a checkpoint is written".
TRAIN_CHILD = """
import json, os, sys, time
hold = os.environ.get("FERLAB_TEST_HOLD")
if hold:
    name, k = hold.rsplit(":", 1)
    seen = [0]
    real = os.replace
    def replace(src, dst, *a, **kw):
        if os.path.basename(str(dst)) == name:
            seen[0] += 1
            if seen[0] == int(k):
                print("HOLD", flush=True)
                time.sleep(600)
        return real(src, dst, *a, **kw)
    os.replace = replace
from ferlab.research.training.trainer import train
cfg = json.loads(open(sys.argv[1]).read())
train(cfg, out=sys.argv[2], device="cpu", progress=False, resume=sys.argv[3] == "1")
print("DONE", flush=True)
"""


def train_child(cfg_json: Path, out: Path, resume: bool, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    script = out.parent / "train_child.py"
    if not script.exists():
        script.write_text(TRAIN_CHILD)
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.Popen([sys.executable, str(script), str(cfg_json), str(out), "1" if resume else "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)


def kill_at(proc: subprocess.Popen[str], seconds: float | None = None, marker: str | None = None,
            timeout: float = 300) -> bool:
    """SIGKILL the child after ``seconds``, or once it prints ``marker``; False if it ended first."""
    if marker is not None:
        deadline = time.monotonic() + timeout
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip() == marker:
                break
            if time.monotonic() > deadline:
                break
        else:
            proc.wait()
            return False
    elif seconds is not None:
        try:
            proc.wait(timeout=seconds)
            return False
        except subprocess.TimeoutExpired:
            pass
    proc.kill()
    proc.wait()
    return True


def recover(cfg_json: Path, out: Path, env: dict[str, str] | None = None) -> list[str]:
    """What a user does after a crash: ``--resume``; if that says there is nothing to resume,
    the plain command. Returns the attempts' outcomes; the run is stuck if none is "ok"."""
    outcomes = []
    for resume in (True, False):
        proc = train_child(cfg_json, out, resume, env)
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode == 0 and "DONE" in stdout:
            outcomes.append(f"ok ({'resume' if resume else 'restart'})")
            return outcomes
        last = (stderr.strip().splitlines() or ["?"])[-1]
        outcomes.append(f"failed ({'resume' if resume else 'restart'}): {last}")
    return outcomes


def weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def stale_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


def write_cfg(cfg: Any, path: Path) -> Path:
    path.write_text(cfg.model_dump_json() if hasattr(cfg, "model_dump_json") else json.dumps(cfg))
    return path
