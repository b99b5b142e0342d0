"""Numbers in the docs and sidecars come from artefacts and commands, never from typing.

- README.md's results table and MODEL_CARD.md are written by scripts/render_docs.py from the
  shipped sidecars and the committed benchmark output; ``--check`` fails when they disagree.
- Each shipped model's sidecar metrics are what ``ferlab evaluate`` measures now: PublicTest
  for every shipped model in the default suite, every recorded split under ``-m slow``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPLITS = {"val": ("val", False), "test": ("test", False), "test-tta": ("test", True),
          "test-all": ("test-all", False), "test-all-tta": ("test-all", True)}


def test_generated_docs_match_the_artefacts() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "render_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_render_docs_detects_a_stale_number(tmp_path, monkeypatch) -> None:
    """The check itself: change one digit in a copy of the model card and it is reported."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import render_docs
    finally:
        sys.path.remove(str(REPO / "scripts"))
    card = tmp_path / "MODEL_CARD.md"
    readme = tmp_path / "README.md"
    card.write_text(render_docs.MODEL_CARD.read_text())
    readme.write_text(render_docs.README.read_text())
    monkeypatch.setattr(render_docs, "MODEL_CARD", card)
    monkeypatch.setattr(render_docs, "README", readme)
    assert render_docs.main(["--check"]) == 0
    text = card.read_text()
    first = text.index("PublicTest (val) accuracy |")
    digit = next(i for i in range(first, len(text)) if text[i].isdigit())
    card.write_text(text[:digit] + str((int(text[digit]) + 1) % 10) + text[digit + 1:])
    assert render_docs.main(["--check"]) == 1
    assert render_docs.main([]) == 0  # rewrites it
    assert render_docs.main(["--check"]) == 0


def _shipped() -> list[str]:
    from ferlab.models.hub import shipped_models

    return [m.name for m in shipped_models()]


def _check(name: str, key: str, fer_data) -> None:
    from ferlab.evaluation.run import evaluate
    from ferlab.models.hub import shipped_models

    meta = next(m for m in shipped_models() if m.name == name).meta
    recorded = meta["metrics"][key]
    split, tta = SPLITS[key]
    measured = evaluate(name, fer_data, split=split, tta=tta, write=False, ferplus=False)
    assert measured["n"] == recorded["n"]
    assert measured["accuracy"] == pytest.approx(float(recorded["accuracy"]), abs=5e-7), (name, key)
    if "macro_f1" in recorded:
        assert measured["macro_avg"]["f1"] == pytest.approx(recorded["macro_f1"], abs=5e-7)
        assert measured["calibration"]["ece"] == pytest.approx(recorded["ece"], abs=5e-7)


def _shipped_quick_first() -> list:
    """Every shipped model; those over 10 MB of weights (resnet18: ~90 s for PublicTest on 2 cores)
    are re-measured under ``-m slow`` with the other splits, so the default suite stays short."""
    from ferlab.models.hub import shipped_models

    return [pytest.param(m.name, marks=pytest.mark.slow) if m.path.stat().st_size > 10_000_000 else m.name
            for m in shipped_models()]


@pytest.mark.parametrize("name", _shipped_quick_first())
def test_shipped_sidecar_publictest_accuracy_is_measured(name: str, fer_data) -> None:
    _check(name, "val", fer_data)


@pytest.mark.slow
@pytest.mark.parametrize("key", [k for k in SPLITS if k != "val"])
@pytest.mark.parametrize("name", _shipped())
def test_shipped_sidecar_test_metrics_are_measured(name: str, key: str, fer_data) -> None:
    _check(name, key, fer_data)


@pytest.mark.parametrize("name", _shipped())
def test_shipped_calibrations_were_fitted_for_these_weights(name: str) -> None:
    """The ``uncertain`` flag of a shipped model uses ``calibration`` (plain outputs) or, with
    ``--tta flip``, ``calibration_tta``: both fitted on PublicTest for exactly these weights."""
    from ferlab.fileio import sha256_file
    from ferlab.models.hub import shipped_models

    m = next(m for m in shipped_models() if m.name == name)
    digest = sha256_file(m.path)
    for key, tta in (("calibration", None), ("calibration_tta", "flip")):
        cal = m.meta[key]
        assert cal["model"]["sha256"] == digest and cal["tta"] == tta, (name, key)
        assert cal["data"]["split"] == "val" and cal["temperature"] > 0 and 0 < cal["threshold"] < 1
