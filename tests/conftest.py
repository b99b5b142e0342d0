"""Shared fixtures. Tests that need the real FER2013 copy or sample media skip with a reason
when ``../shared`` is absent (users' machines); point FERLAB_SHARED elsewhere to use another."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("FERLAB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FER_ROOT = SHARED / "data" / "fer2013"
FERPLUS = SHARED / "data" / "ferplus"
SAMPLES = SHARED / "samples"
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2026may.onnx"

# The repository's model zoo (every model it trained, maintainers/zoo/README.md): tests refer to its models by
# name, as the training configs do, through $FERLAB_ZOO.
ZOO = Path(__file__).resolve().parents[1] / "maintainers" / "zoo"
os.environ.setdefault("FERLAB_ZOO", str(ZOO))

TINY_MODEL_CFG = {"name": "fernet", "widths": [8, 16, 16, 16], "depths": [0, 0, 0, 0],
                  "head": [16], "dropout": [0.0, 0.0]}


@pytest.fixture(scope="session")
def fer_root() -> Path:
    if not (FER_ROOT / "train").is_dir():
        pytest.skip(f"FER2013 not found at {FER_ROOT} (set FERLAB_SHARED to the shared folder)")
    return FER_ROOT


@pytest.fixture(scope="session")
def fer_data(fer_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The whole FER2013 decoded once per test session (cache in the user cache dir)."""
    from ferlab.research.data import load_fer2013

    return load_fer2013(fer_root)


@pytest.fixture(scope="session")
def ferplus_dir() -> Path:
    """The FER+ votes folder (votes_by_kaggle_file.csv, fer2013new.csv) beside FER2013."""
    if not (FERPLUS / "votes_by_kaggle_file.csv").is_file():
        pytest.skip(f"FER+ votes not found at {FERPLUS} (set FERLAB_SHARED to the shared folder)")
    return FERPLUS


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not (SAMPLES / "photos").is_dir():
        pytest.skip(f"sample photos/video not found at {SAMPLES} (set FERLAB_SHARED)")
    return SAMPLES


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight model saved as a real checkpoint (safetensors + JSON sidecar)."""
    import torch

    from ferlab.research.nets import create_from_config, save_checkpoint

    torch.manual_seed(0)
    model = create_from_config(dict(TINY_MODEL_CFG)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(path, model, {"model": dict(TINY_MODEL_CFG), "metrics": {}})
    return path


def read_video(path: Path) -> list:
    """Every frame of a video file as BGR arrays (for tests that compare frames)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames
