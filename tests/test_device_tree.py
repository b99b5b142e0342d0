"""maintainers/scripts/device_tree.sh: what a device call would carry, and slim/restore of the shipped weights,
run in a throwaway git repository shaped like this one (the real index is never touched)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "maintainers" / "scripts" / "device_tree.sh"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _script(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "maintainers/scripts/device_tree.sh", *args], cwd=repo, capture_output=True, text=True)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    r = tmp_path / "repo"
    (r / "maintainers" / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, r / "maintainers" / "scripts" / "device_tree.sh")
    pre = r / "src" / "ferlab" / "pretrained"
    pre.mkdir(parents=True)
    (pre / "big.safetensors").write_bytes(b"\0" * (40 << 20))
    (pre / "big.onnx").write_bytes(b"\0" * (30 << 20))
    (pre / "big.json").write_text("{}")
    (r / "README.md").write_text("x\n")
    _git(r, "init", "-q")
    _git(r, "add", ".")
    _git(r, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    return r


def test_size_slim_and_restore(repo: Path) -> None:
    before = _script(repo, "size")
    assert before.returncode == 1 and "= 70.0 MiB (limit 64 MiB)" in before.stdout and "over the limit" in before.stdout

    slim = _script(repo, "slim")
    assert slim.returncode == 0, slim.stderr
    tracked = _git(repo, "ls-files").split()
    assert "src/ferlab/pretrained/big.safetensors" not in tracked and "src/ferlab/pretrained/big.json" in tracked
    assert (repo / "src/ferlab/pretrained/big.safetensors").stat().st_size == 40 << 20  # still on disk
    after = _script(repo, "size")
    assert after.returncode == 0 and "working tree 0.0 MiB" in after.stdout
    carried = _script(repo, "size", "src/ferlab/pretrained/big.onnx")  # a teacher named in `carry`
    assert carried.returncode == 0 and "carry 30.0 MiB = 30.0 MiB" in carried.stdout
    assert _script(repo, "slim").returncode == 1  # twice is refused

    restore = _script(repo, "restore")
    assert restore.returncode == 0
    assert _git(repo, "status", "--porcelain") == ""  # exactly as before slim
    assert "ferlab device_tree.sh" not in (repo / ".git/info/exclude").read_text()
    assert _script(repo, "size").returncode == 1


def test_slim_refuses_while_changes_are_staged(repo: Path) -> None:
    (repo / "README.md").write_text("changed\n")
    _git(repo, "add", "README.md")
    res = _script(repo, "slim")
    assert res.returncode == 1 and "changes are staged" in res.stdout
    assert "src/ferlab/pretrained/big.safetensors" in _git(repo, "ls-files")
