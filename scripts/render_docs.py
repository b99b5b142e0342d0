#!/usr/bin/env python3
"""Write the numbers in README.md and MODEL_CARD.md from the artefacts they describe.

    .venv/bin/python scripts/render_docs.py          # rewrite the generated blocks
    .venv/bin/python scripts/render_docs.py --check  # exit 1 if a committed doc is stale

Sources, nothing typed by hand: each shipped model's JSON sidecar (its ``metrics`` come from
``ferlab evaluate`` through ``scripts/ship_model.py``; its ``notes`` say where and how it was
trained), the weights files themselves (size, parameter count) and the committed benchmark
output ``benchmarks/results-cpu.md`` (ms per face). Each document keeps its prose; only the
blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` are rewritten.
tests/test_docs.py runs ``--check``, so a doc that disagrees with a sidecar fails the suite.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from ferlab.constants import CLASS_NAMES  # noqa: E402
from ferlab.models.hub import ShippedModel, default_model, shipped_models  # noqa: E402

README = REPO / "README.md"
MODEL_CARD = REPO / "src" / "ferlab" / "pretrained" / "MODEL_CARD.md"
BENCH_CPU = REPO / "benchmarks" / "results-cpu.md"
BENCH_LINE = re.compile(r"^\s*(?P<model>\S+)\s+ORT fp32\s+batch (?P<batch>\d+):\s+(?P<ms>[\d.]+) ms/face", re.M)


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def metric(m: ShippedModel, split: str, key: str = "accuracy") -> float | None:
    value = m.meta.get("metrics", {}).get(split, {}).get(key)
    return None if value is None else float(value)


def ferplus(m: ShippedModel, key: str, split: str = "test") -> float | None:
    value = m.meta.get("metrics", {}).get(split, {}).get("ferplus", {}).get(key)
    return None if value is None else float(value)


def ms_per_face(text: str) -> dict[tuple[str, int], float]:
    """(model name, batch) -> ms per face, ONNX Runtime fp32, from the benchmark's output."""
    return {(g["model"], int(g["batch"])): float(g["ms"]) for g in BENCH_LINE.finditer(text)}


def val_accuracy(m: ShippedModel) -> str:
    """PublicTest accuracy; for a model whose last layer was fitted on PublicTest (``ferlab
    recalibrate``) also the held-out estimate, which is what chose the default."""
    shown = pct(metric(m, "val"))
    return shown if m.held_out_accuracy is None else f"{shown} (fitted on it; held out {pct(m.held_out_accuracy)})"


def parameters(m: ShippedModel) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(m.path), framework="numpy") as fh:
        for key in fh.keys():
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                shape = fh.get_slice(key).get_shape()
                n = 1
                for s in shape:
                    n *= s
                total += n
    return total


def architecture(m: ShippedModel) -> str:
    cfg = dict(m.meta.get("model", {}))
    name = cfg.pop("name", "?")
    cfg.pop("pretrained", None)
    opts = ", ".join(f"{k}={v}" for k, v in cfg.items())
    return f"`{name}` ({opts}); {parameters(m) / 1e6:.1f}M parameters"


def training(m: ShippedModel) -> str:
    notes = m.meta.get("notes") or ["—"]
    return " ".join(str(n) for n in notes)


def _speed(m: ShippedModel, bench: dict[tuple[str, int], float]) -> str:
    b1, b4 = bench.get((m.name, 1)), bench.get((m.name, 4))
    if b1 is None:
        return "—"
    return f"{b1:.2f} (batch 1), {b4:.2f} (batch 4)" if b4 is not None else f"{b1:.2f} (batch 1)"


def _calibration(m: ShippedModel, key: str = "calibration", split: str = "test") -> str:
    cal = m.meta.get(key)
    if not isinstance(cal, dict):
        return "— (no calibration: `uncertain` is null)"
    return (f"T = {cal['temperature']:.3f}, uncertain when 1 - max p >= {cal['threshold']:.3f}; "
            f"{pct(ferplus(m, 'flagged', split))}")


# -- blocks ------------------------------------------------------------------------------------

def readme_results(models: list[ShippedModel], default: str, bench: dict[tuple[str, int], float]) -> str:
    rows = ["| model | PublicTest (val) | **PrivateTest** | PrivateTest + flip TTA | all 7,178 | "
            "all 7,178 + flip TTA | macro-F1 (Private) | ECE (Private) | FER+ majority acc (Private) | "
            "AUROC unreadable (Private) | ms/face, ONNX Runtime fp32, batch 1 |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in models:
        star = " (default)" if m.name == default else ""
        b1 = bench.get((m.name, 1))
        rows.append(f"| `{m.name}`{star} | {val_accuracy(m)} | **{pct(metric(m, 'test'))}** | "
                    f"{pct(metric(m, 'test-tta'))} | {pct(metric(m, 'test-all'))} | {pct(metric(m, 'test-all-tta'))} | "
                    f"{num(metric(m, 'test', 'macro_f1'))} | {num(metric(m, 'test', 'ece'))} | "
                    f"{pct(ferplus(m, 'accuracy'))} | {num(ferplus(m, 'auroc_unreadable'))} | "
                    f"{'—' if b1 is None else f'{b1:.2f}'} |")
    rows.append("")
    rows.append("How each was trained (from its sidecar's notes):")
    rows.append("")
    rows += [f"- `{m.name}`: {training(m)}" for m in models]
    return "\n".join(rows)


def card_summary(models: list[ShippedModel], default: str, bench: dict[tuple[str, int], float]) -> str:
    head = "| | " + " | ".join(f"`{m.name}`" + (" (default)" if m.name == default else "") for m in models) + " |"
    rows = [head, "|---" * (len(models) + 1) + "|"]

    def row(label: str, values: list[str]) -> None:
        rows.append(f"| {label} | " + " | ".join(values) + " |")

    row("Architecture", [architecture(m) for m in models])
    row("Training", [training(m) for m in models])
    row("Selected epoch (best PublicTest accuracy)", [str(m.meta.get("epoch", "—")) for m in models])
    row("Weights", [f"{m.meta.get('dtype', 'float32')} safetensors, {m.path.stat().st_size / 1e6:.1f} MB"
                    for m in models])
    row("PublicTest (val) accuracy", [val_accuracy(m) for m in models])
    row("**PrivateTest accuracy**", [f"**{pct(metric(m, 'test'))}** (flip TTA {pct(metric(m, 'test-tta'))})"
                                     for m in models])
    row("PrivateTest macro-F1 / weighted-F1", [f"{num(metric(m, 'test', 'macro_f1'))} / "
                                               f"{num(metric(m, 'test', 'weighted_f1'))}" for m in models])
    row("PrivateTest ECE (15 bins) / NLL", [f"{num(metric(m, 'test', 'ece'))} / {num(metric(m, 'test', 'nll'))}"
                                            for m in models])
    row("Mean confidence correct / wrong (PrivateTest)",
        [f"{num(metric(m, 'test', 'mean_confidence_correct'))} / {num(metric(m, 'test', 'mean_confidence_wrong'))}"
         for m in models])
    row("All 7,178 test images accuracy", [f"{pct(metric(m, 'test-all'))} (flip TTA {pct(metric(m, 'test-all-tta'))})"
                                           for m in models])
    row("All 7,178: macro-F1, ECE", [f"{num(metric(m, 'test-all', 'macro_f1'))}, {num(metric(m, 'test-all', 'ece'))}"
                                     for m in models])
    row("PrivateTest **FER+ majority accuracy** (faces with a 7-class majority)",
        [f"**{pct(ferplus(m, 'accuracy'))}** (n = {num(ferplus(m, 'n_majority7'), 0)}; FER2013 labels on the same "
         f"faces {pct(ferplus(m, 'fer2013_accuracy_same_faces'))})" for m in models])
    row("PrivateTest cross-entropy / ECE against the vote distribution (raw; temperature-scaled)",
        [f"{num(ferplus(m, 'nll_votes'))} / {num(ferplus(m, 'ece_votes'))}; {num(ferplus(m, 'nll_votes_calibrated'))} "
         f"/ {num(ferplus(m, 'ece_votes_calibrated'))}" for m in models])
    row("PrivateTest AUROC of the uncertainty for unreadable faces", [num(ferplus(m, "auroc_unreadable")) for m in models])
    row("PrivateTest FER+ accuracy at 80% / 90% coverage",
        [f"{pct(ferplus(m, 'accuracy_at_80'))} / {pct(ferplus(m, 'accuracy_at_90'))}" for m in models])
    row("`uncertain` flag: temperature, threshold (fitted on PublicTest); PrivateTest share flagged",
        [_calibration(m) for m in models])
    row("With `--tta flip`: the same flag (`calibration_tta`, fitted on PublicTest)",
        [_calibration(m, "calibration_tta", "test-tta") for m in models])
    row("PrivateTest FER2013 accuracy on the faces with a 7-class FER+ majority, plain / flip TTA; ECE plain / flip TTA",
        [f"{pct(ferplus(m, 'fer2013_accuracy_same_faces'))} / {pct(ferplus(m, 'fer2013_accuracy_same_faces', 'test-tta'))}; "
         f"{num(metric(m, 'test', 'ece'))} / {num(metric(m, 'test-tta', 'ece'))}" for m in models])
    row("ms per face, ONNX Runtime fp32 (benchmarks/results-cpu.md)", [_speed(m, bench) for m in models])
    rows.append("")
    rows.append("Per-class F1 on PrivateTest:")
    rows.append("")
    rows.append("| class | " + " | ".join(m.name for m in models) + " |")
    rows.append("|---" * (len(models) + 1) + "|")
    for c in CLASS_NAMES:
        vals = [m.meta.get("metrics", {}).get("test", {}).get("per_class_f1", {}).get(c) for m in models]
        rows.append(f"| {c} | " + " | ".join(num(v) for v in vals) + " |")
    return "\n".join(rows)


# -- splicing ----------------------------------------------------------------------------------

def splice(text: str, name: str, body: str, where: Path) -> str:
    pattern = re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- /generated:{name} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{where}: no <!-- generated:{name} --> ... <!-- /generated:{name} --> block")
    return pattern.sub(lambda mt: mt.group(1) + body.rstrip() + "\n" + mt.group(3), text, count=1)


def render() -> dict[Path, str]:
    models = shipped_models()
    default = default_model().name
    bench = ms_per_face(BENCH_CPU.read_text()) if BENCH_CPU.is_file() else {}
    note = ("<!-- Written by scripts/render_docs.py from the sidecars and benchmarks/results-cpu.md; "
            "edit those, not this block. -->\n")
    out: dict[Path, str] = {}
    out[README] = splice(README.read_text(), "results", note + readme_results(models, default, bench), README)
    out[MODEL_CARD] = splice(MODEL_CARD.read_text(), "model-card", note + card_summary(models, default, bench),
                             MODEL_CARD)
    return out


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if a document is out of date")
    args = ap.parse_args(argv)
    stale = []
    for path, text in render().items():
        if path.read_text() != text:
            stale.append(path)
            if not args.check:
                path.write_text(text)
    names = ", ".join(_shown(p) for p in stale)
    if args.check and stale:
        print(f"out of date (run scripts/render_docs.py): {names}")
        return 1
    print(("stale: " if args.check else "written: ") + (names or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
