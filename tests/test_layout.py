"""The package's architecture: no import cycles, counting imports inside functions too.

A late import that closes a circle is still a circle: it works until someone moves it to the
top of a file. grimp (import-linter's graph library) reads every import statement of every
module, function bodies included; SciPy finds the strongly connected components.
"""
from __future__ import annotations

import numpy as np
import pytest


def _import_cycles(package: str) -> list[list[str]]:
    grimp = pytest.importorskip("grimp")
    from scipy.sparse import lil_matrix
    from scipy.sparse.csgraph import connected_components

    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    adjacency = lil_matrix((len(modules), len(modules)), dtype=np.int8)
    for m in modules:
        for target in graph.find_modules_directly_imported_by(m):
            adjacency[index[m], index[target]] = 1
    _, labels = connected_components(adjacency.tocsr(), directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for m in modules:
        groups.setdefault(int(labels[index[m]]), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def test_no_import_cycles() -> None:
    cycles = _import_cycles("ferlab")
    assert not cycles, "import cycles (modules that reach each other): " + "; ".join(
        " <-> ".join(c) for c in cycles)


def test_cycle_finder_sees_late_imports(tmp_path, monkeypatch) -> None:
    """The check itself: a cycle closed only by an import inside a function is found."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def late():\n    from . import a\n    return a\n")
    (pkg / "c.py").write_text("from . import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _import_cycles("cyclepkg") == [["cyclepkg.a", "cyclepkg.b"]]


def test_the_wheel_stays_small() -> None:
    """What ``pip install ferlab`` downloads: every file the wheel takes (the package's modules
    and its package data), at most 20 MB uncompressed, so a larger model must still fit."""
    import fnmatch
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    repo = Path(__file__).resolve().parents[1]
    pkg = repo / "src" / "ferlab"
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ferlab"]
    files = [p for p in pkg.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and (p.suffix == ".py" or any(fnmatch.fnmatch(p.relative_to(pkg).as_posix(), pat) for pat in patterns))]
    total = sum(p.stat().st_size for p in files)
    biggest = sorted(files, key=lambda p: -p.stat().st_size)[:3]
    assert total <= 20e6, f"{total / 1e6:.1f} MB; largest: " + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.1f} MB" for p in biggest)
    assert not list(pkg.glob("pretrained/*.safetensors"))  # each model's weights once: its ONNX file
