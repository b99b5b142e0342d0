"""maintainers/scripts/fer2013_pack.py: FER2013 in one small file for the development machines' device
calls (maintainers/scripts/pack_data.py), and back into FER2013's own format, which ferlab reads.

The module is maintainer tooling outside the package, so it is imported from its path.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ferlab.research.data import FerData, load_fer2013
from ferlab.errors import FerlabError

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "maintainers" / "scripts"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("fer2013_pack", SCRIPTS / "fer2013_pack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fp = _module()


def _csv(path: Path, seed: int = 0) -> Path:
    """A small FER2013 CSV: 7 faces per usage and class."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage in ("Training", "PublicTest", "PrivateTest"):
        for i in range(14):
            img = rng.integers(0, 256, 48 * 48)
            lines.append(f"{i % 7},{' '.join(map(str, img))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def synthetic_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    return _csv(tmp_path / "fer2013.csv")


@pytest.mark.parametrize("codec", ["raw", "xz"])
def test_pack_roundtrip_exact(synthetic_csv: Path, tmp_path: Path, codec: str) -> None:
    data = load_fer2013(synthetic_csv)
    info = fp.pack(data, tmp_path / "d.npz", splits=["train", "val"], codec=codec)
    assert fp.is_packed(tmp_path / "d.npz") and not fp.is_packed(synthetic_csv)
    back = fp.load_packed(tmp_path / "d.npz")
    keep = np.isin(data.usage, [0, 1])
    assert info["images"] == int(keep.sum()) == len(back.labels)
    assert np.array_equal(back.images, data.images[keep])
    assert np.array_equal(back.labels, data.labels[keep]) and np.array_equal(back.usage, data.usage[keep])
    assert back.names == [n for n, k in zip(data.names, keep) if k]
    assert len(back.split("val")) == int((data.usage == 1).sum())


@pytest.mark.parametrize("codec", ["raw", "xz"])
def test_unpack_writes_a_fer2013_csv_that_ferlab_reads_back(synthetic_csv: Path, tmp_path: Path, codec: str) -> None:
    data = load_fer2013(synthetic_csv)
    fp.pack(data, tmp_path / "d.npz", splits=["train", "test"], codec=codec)
    path = fp.unpack(tmp_path / "d.npz", tmp_path / "unpacked")
    assert path == tmp_path / "unpacked" / "fer2013.csv"
    back = load_fer2013(path)
    keep = np.isin(data.usage, [0, 2])
    assert np.array_equal(back.images, data.images[keep]) and np.array_equal(back.labels, data.labels[keep])
    assert np.array_equal(back.usage, data.usage[keep])


def test_pack_jpeg_is_lossless_against_the_folder_loader(fer_data: Any, fer_root: Path, tmp_path: Path) -> None:
    idx = np.concatenate([np.flatnonzero(fer_data.usage == u)[:40] for u in (0, 1, 2)])
    sub = FerData(np.ascontiguousarray(fer_data.images[idx]), fer_data.labels[idx], fer_data.usage[idx],
                  [fer_data.names[i] for i in idx], source=str(fer_root))
    info = fp.pack(sub, tmp_path / "j.npz", codec="jpeg", root=fer_root)
    assert info["distinct_jpeg_headers"] >= 1
    back = fp.load_packed(tmp_path / "j.npz")
    assert np.array_equal(back.images, sub.images)  # same decoder, same pixels
    assert np.array_equal(back.labels, sub.labels)
    # unpacked: the dataset's own files, byte for byte, which ferlab loads as it loads the original
    out = fp.unpack(tmp_path / "j.npz", tmp_path / "fer2013")
    assert out == tmp_path / "fer2013"
    for name in sub.names[:5] + sub.names[-5:]:
        assert (out / name).read_bytes() == (fer_root / name).read_bytes()
    again = load_fer2013(out, cache=False)
    assert sorted(again.names) == sorted(sub.names)
    at = {name: i for i, name in enumerate(again.names)}  # the folder loader has its own file order
    order = [at[name] for name in sub.names]
    assert np.array_equal(again.images[order], sub.images) and np.array_equal(again.usage[order], sub.usage)
    assert np.array_equal(again.labels[order], sub.labels)


def test_pack_refuses_a_foreign_npz(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(FerlabError, match="not a ferlab dataset pack"):
        fp.load_packed(tmp_path / "other.npz")
    with pytest.raises(FerlabError, match="not a ferlab dataset pack"):
        fp.unpack(tmp_path / "other.npz", tmp_path / "out")


def test_ferlab_itself_reads_no_packs(synthetic_csv: Path, tmp_path: Path) -> None:
    """The pack is a transport format of the development machines: ferlab's loader takes
    FER2013's own formats only, and the package holds no pack code."""
    fp.pack(load_fer2013(synthetic_csv), tmp_path / "d.npz", codec="raw")
    with pytest.raises(FerlabError, match="not a FER2013 CSV|not a readable CSV"):
        load_fer2013(tmp_path / "d.npz")
    assert not (REPO / "src" / "ferlab" / "data" / "packed.py").exists()


def test_pack_data_script_packs_and_unpacks(synthetic_csv: Path, tmp_path: Path) -> None:
    """``maintainers/scripts/pack_data.py`` end to end, each step checked against its source by the script."""
    pack = [sys.executable, str(SCRIPTS / "pack_data.py"), "--data", str(synthetic_csv), "--out",
            str(tmp_path / "d.npz"), "--codec", "xz"]
    proc = subprocess.run(pack, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "identical to the source" in proc.stdout, proc.stdout + proc.stderr
    unpack = [sys.executable, str(SCRIPTS / "pack_data.py"), "--unpack", str(tmp_path / "d.npz"), "--to",
              str(tmp_path / "back")]
    proc = subprocess.run(unpack, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "identical to the pack" in proc.stderr, proc.stdout + proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "back" / "fer2013.csv")  # what to pass as --data
