"""Numbers in the docs and sidecars come from artefacts and commands, never from typing.

- README.md's results table, MODEL_CARD.md and maintainers/zoo/README.md are written by
  maintainers/scripts/render_docs.py from the sidecars and the committed benchmark output; ``--check`` fails
  when they disagree, and every zoo model must have its section in maintainers/zoo/README.md.
- Each box model's sidecar metrics are what ``ferlab evaluate`` measures now on the box's own
  file: PublicTest in the default suite, every recorded split under ``-m slow``; its calibration
  was fitted for exactly the weights it holds.
- The docs stay inside the repository: no link to a file a clone does not have, and every
  repository path and ``ferlab.*`` name they cite exists.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"val": ("val", False), "test": ("test", False), "test-tta": ("test", True),
          "test-all": ("test-all", False), "test-all-tta": ("test-all", True)}
DOCS = [REPO / "README.md", REPO / "src" / "ferlab" / "pretrained" / "MODEL_CARD.md", REPO / "maintainers" / "zoo" / "README.md",
        *sorted((REPO / "docs").glob("*.md"))]
MODEL_CARD_MAX_WORDS = 1000


def _render_docs():  # noqa: ANN202 - the script as a module
    spec = importlib.util.spec_from_file_location("render_docs", REPO / "maintainers" / "scripts" / "render_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_match_the_artefacts() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "maintainers" / "scripts" / "render_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture
def docs_copy(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    """render_docs working on copies of the three documents."""
    rd = _render_docs()
    for attr in ("README", "MODEL_CARD", "ZOO_README"):
        copy = tmp_path / f"{attr}.md"
        copy.write_text(getattr(rd, attr).read_text())
        monkeypatch.setattr(rd, attr, copy)
    return rd


def test_render_docs_detects_a_stale_number(docs_copy) -> None:  # noqa: ANN001
    """The check itself: change one digit of the model card's accuracy and it is reported."""
    rd = docs_copy
    assert rd.main(["--check"]) == 0
    text = rd.MODEL_CARD.read_text()
    row = text.index("| PrivateTest accuracy (n = ")
    first = text.index("**", row)  # the first model's accuracy, after the label's own digits
    digit = next(i for i in range(first, len(text)) if text[i].isdigit())
    rd.MODEL_CARD.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    assert rd.main(["--check"]) == 1
    assert rd.main([]) == 0  # rewrites it
    assert rd.main(["--check"]) == 0
    assert rd.MODEL_CARD.read_text() == text


def test_every_zoo_model_has_its_section(docs_copy) -> None:  # noqa: ANN001
    """A zoo model whose block is missing from maintainers/zoo/README.md stops the render, naming it."""
    rd = docs_copy
    name = rd.zoo_models()[0].name
    text = rd.ZOO_README.read_text()
    block = re.search(rf"<!-- generated:{name} -->\n.*?<!-- /generated:{name} -->\n", text, re.S)
    rd.ZOO_README.write_text(text.replace(block.group(0), ""))
    with pytest.raises(SystemExit, match=name):
        rd.render()


def test_zoo_section_without_a_sidecar_shows_no_number(docs_copy) -> None:  # noqa: ANN001
    rd = docs_copy
    body = rd.zoo_model(rd.Artefacts(), "not_trained_yet")
    assert "maintainers/zoo/not_trained_yet.json" in body and not re.search(r"\d", body.replace("not_trained_yet", ""))


def test_wilson_interval() -> None:
    rd = _render_docs()
    lo, hi = rd.wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = rd.wilson(0.7, 3589)
    assert lo < 0.7 < hi and hi - lo == pytest.approx(2 * 1.96 * (0.7 * 0.3 / 3589) ** 0.5, rel=0.01)
    assert rd.wilson(1.0, 10)[1] == pytest.approx(1.0) and rd.wilson(0.0, 10)[0] == pytest.approx(0.0)


def test_model_card_is_short() -> None:
    words = len(DOCS[1].read_text().split())
    assert words < MODEL_CARD_MAX_WORDS, f"MODEL_CARD.md has {words} words"


LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
REPO_PATH = re.compile(r"`((?:src|scripts|configs|benchmarks|tests|docs|zoo|experiments)/[\w./*-]+)`")
DOTTED = re.compile(r"`(ferlab(?:\.\w+)+)`")


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file: lower case, punctuation dropped,
    spaces as hyphens."""
    heads = re.findall(r"^#+\s+(.*?)\s*$", re.sub(r"```.*?```", "", doc.read_text(), flags=re.S), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_stay_inside_the_repository(doc: Path) -> None:
    """No path outside the repository, and every relative link (and its #anchor) resolves."""
    text = doc.read_text()
    assert "../shared" not in text and "/work/" not in text, "a path outside the repository"
    for target, anchor in LINK.findall(text):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path = (doc.parent / target).resolve() if target else doc
        assert path.is_relative_to(REPO) and path.exists(), f"{doc.name}: broken link {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path), f"{doc.name}: no heading for {target}#{anchor}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_cited_repository_paths_exist(doc: Path) -> None:
    """Every `src/...`, `maintainers/scripts/...` etc. a document cites is in the repository (a glob
    matches something); a moved file must take its mentions with it."""
    text = doc.read_text()
    missing = [p for p in REPO_PATH.findall(text) if not (any(REPO.glob(p)) if "*" in p else (REPO / p).exists())]
    assert not missing, f"{doc.name} cites paths that do not exist: {missing}"


def _resolves(dotted: str) -> bool:
    """``ferlab.a.b[.name[.attr]]`` -> the longest prefix that is a module file under src/, and
    every remaining part a ``def``, ``class`` or assignment in it (read as text, not imported)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        base = REPO / "src" / Path(*parts[:i])
        module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if module.is_file():
            text = module.read_text()
            return all(re.search(rf"^\s*(?:def|class)\s+{name}\b|^\s*{name}\s*[:=]", text, re.M)
                       for name in parts[i:])
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_cited_code_names_exist(doc: Path) -> None:
    missing = [d for d in DOTTED.findall(doc.read_text()) if not _resolves(d)]
    assert not missing, f"{doc.name} cites names that do not exist: {missing}"


def _box() -> list:
    from ferlab.models.hub import shipped_models

    return shipped_models()


def _check(name: str, key: str, fer_data) -> None:  # noqa: ANN001
    from ferlab.research.evaluation.run import evaluate

    meta = next(m for m in _box() if m.name == name).meta
    recorded = meta["metrics"][key]
    split, tta = SPLITS[key]
    measured = evaluate(name, fer_data, split=split, tta=tta, write=False, ferplus=False)
    assert measured["n"] == recorded["n"]
    assert measured["accuracy"] == pytest.approx(float(recorded["accuracy"]), abs=5e-7), (name, key)
    if "macro_f1" in recorded:
        assert measured["macro_avg"]["f1"] == pytest.approx(recorded["macro_f1"], abs=5e-7)
        assert measured["calibration"]["ece"] == pytest.approx(recorded["ece"], abs=5e-7)


def _box_quick_first() -> list:
    """Every box model; one over 10 MB of weights (a larger backbone) is re-measured under
    ``-m slow`` with the other splits, so the default suite stays short."""
    return [pytest.param(m.name, marks=pytest.mark.slow) if m.path.stat().st_size > 10_000_000 else m.name
            for m in _box()]


@pytest.mark.parametrize("name", _box_quick_first())
def test_box_sidecar_publictest_accuracy_is_measured(name: str, fer_data) -> None:  # noqa: ANN001
    _check(name, "val", fer_data)


@pytest.mark.slow
@pytest.mark.parametrize("key", [k for k in SPLITS if k != "val"])
@pytest.mark.parametrize("name", [m.name for m in _box()])
def test_box_sidecar_test_metrics_are_measured(name: str, key: str, fer_data) -> None:  # noqa: ANN001
    _check(name, key, fer_data)


def _fitted_for(meta: dict, digest: str, name: str) -> None:
    for key, tta in (("calibration", None), ("calibration_tta", "flip")):
        cal = meta[key]
        assert cal["model"]["sha256"] == digest and cal["tta"] == tta, (name, key)
        assert cal["data"]["split"] == "val" and cal["temperature"] > 0 and 0 < cal["threshold"] < 1


@pytest.mark.parametrize("name", [m.name for m in _box()])
def test_box_calibrations_were_fitted_for_these_weights(name: str) -> None:
    """The ``uncertain`` flag of a box model uses ``calibration`` (plain outputs) or, with
    ``--tta flip``, ``calibration_tta``: both fitted on PublicTest for the zoo checkpoint that the
    ONNX file was made from (its metadata ``source_sha256``), whose values it holds exactly."""
    import onnx

    from ferlab.fileio import sha256_file

    m = next(m for m in _box() if m.name == name)
    source = {p.key: p.value for p in onnx.load(str(m.path)).metadata_props}["source_sha256"]
    _fitted_for(m.meta, source, name)
    zoo = REPO / "maintainers" / "zoo" / f"{m.meta['zoo_name']}.safetensors"
    if zoo.is_file():
        assert sha256_file(zoo) == source, f"{name}: the box file was made from other weights than maintainers/zoo/{zoo.name}"


def _zoo() -> list[str]:
    return [p.stem for p in sorted((REPO / "maintainers" / "zoo").glob("*.safetensors")) if p.with_suffix(".json").is_file()]


@pytest.mark.parametrize("name", _zoo())
def test_zoo_calibrations_were_fitted_for_these_weights(name: str) -> None:
    import json

    from ferlab.fileio import sha256_file

    weights = REPO / "maintainers" / "zoo" / f"{name}.safetensors"
    _fitted_for(json.loads(weights.with_suffix(".json").read_text()), sha256_file(weights), name)
