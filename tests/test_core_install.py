"""The core install (``pip install ferlab``: ONNX Runtime, no PyTorch) runs the shipped models.

- each shipped model's committed ONNX twin was made from its current checkpoint and computes
  what the checkpoint computes (max |dp| on real PrivateTest faces);
- with PyTorch made unimportable, ``ferlab predict``/``demo``/``models`` and the Python API
  work, and a command that needs PyTorch says in one line which extra to install.
CI also builds a real core virtual environment (.ci/run) and runs demo + predict there.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK_TORCH = ("import sys\n"
               "for name in ('torch', 'torchvision', 'sklearn', 'safetensors', 'onnx', 'yaml'):\n"
               "    sys.modules[name] = None  # as in the core install: importing them fails\n")


def _shipped() -> list[str]:
    from ferlab.models.hub import shipped_models

    return [m.name for m in shipped_models()]


def test_box_models_were_made_from_their_zoo_checkpoints() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "maintainers" / "scripts" / "export_shipped_onnx.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", _shipped())
def test_box_model_computes_what_its_checkpoint_computes(name: str, fer_data) -> None:
    """ONNX Runtime on the box's file = PyTorch on the zoo checkpoint = PyTorch on the box's file."""
    from ferlab.research.evaluation.predict import predict_probs
    from ferlab.inference.backends import OnnxBackend
    from ferlab.probabilities import softmax
    from ferlab.research.nets.checkpoint import load_checkpoint
    from ferlab.models.hub import resolve_model, shipped_models
    from ferlab.inference.preprocess import faces_to_input

    box = resolve_model(name)
    zoo = REPO / "maintainers" / "zoo" / f"{next(m for m in shipped_models() if m.name == name).meta['zoo_name']}.safetensors"
    faces = np.ascontiguousarray(fer_data.split("test").images[:700])
    ckpt = load_checkpoint(zoo)
    p_torch = predict_probs(ckpt.model, faces, ckpt.mean, ckpt.std)
    p_box_torch = predict_probs(load_checkpoint(box).model, faces, ckpt.mean, ckpt.std)
    p_onnx = softmax(OnnxBackend(box)(faces_to_input(faces, ckpt.mean, ckpt.std)))
    dp = float(np.abs(p_torch - p_onnx).max())
    print(f"{name}: max |dp| ONNX Runtime vs zoo checkpoint on 700 PrivateTest faces = {dp:.2e}")
    assert dp < 1e-5
    assert (p_torch.argmax(1) == p_onnx.argmax(1)).all()
    assert np.array_equal(p_torch, p_box_torch)  # PyTorch reads the very same tensors out of the ONNX file


def _run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)


def test_python_api_runs_without_torch(samples_dir: Path) -> None:
    photo = samples_dir / "photos" / "obama_and_biden.jpg"
    proc = _run_without_torch(
        "from ferlab.inference import Recognizer\n"
        "rec = Recognizer.from_pretrained()\n"
        f"faces = rec.predict({str(photo)!r})\n"
        "print(len(faces), rec.info.name, type(rec.backend).__name__)\n")
    assert proc.returncode == 0, proc.stderr
    count, name, backend = proc.stdout.split()
    assert int(count) >= 2 and backend == "OnnxBackend" and name in _shipped()


def test_cli_runs_without_torch(samples_dir: Path, tmp_path: Path) -> None:
    photo = samples_dir / "photos" / "two_people.jpg"
    main = "from ferlab.cli import main\nraise SystemExit(main({args!r}))\n"
    proc = _run_without_torch(main.format(args=["predict", str(photo), "--out", str(tmp_path / "faces.json")]))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "faces.json").is_file()
    proc = _run_without_torch(main.format(args=["demo", "--no-window", "--out", str(tmp_path / "demo")]))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "demo.jsonl").stat().st_size > 0
    proc = _run_without_torch(main.format(args=["models"]))
    assert proc.returncode == 0, proc.stderr


def test_torch_commands_name_the_extra_without_torch(tmp_path: Path) -> None:
    main = "from ferlab.cli import main\nraise SystemExit(main({args!r}))\n"
    proc = _run_without_torch(main.format(args=["evaluate", "--model", "fernet", "--data", str(tmp_path)]))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and 'pip install "ferlab[train]"' in lines[0], proc.stderr
