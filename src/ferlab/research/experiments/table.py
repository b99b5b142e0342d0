"""The rows of thesis section 5, what the thesis reported for each, and our results beside them.

The rows and the thesis's reported numbers are data, not code: ``thesis_reported.json`` beside
this module (package data) holds them as copied from the thesis text and its tables ("thesis
reported"); nothing here computes or adjusts them. Our numbers come from
``OUT/<config>/seed<N>/result.json`` files written by the runner, aggregated over seeds
(mean and sample standard deviation). A number we did not measure stays blank: a blank is
honest, a copied or guessed value would not be.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...fileio import write_text

FINAL = "exp09_erasing_0.3"  # section 6's configuration = Exp. 9
RESULT = "result.json"  # one per run folder (and one for Exp. 15); complete: true marks a finished run
EXP15_DIR = "exp15_smoothing"
THESIS_REPORTED = Path(__file__).with_name("thesis_reported.json")


@dataclass(frozen=True)
class Row:
    """One line of the comparison: experiment number, what varies, the config that runs it,
    and the thesis's reported numbers (``test_acc`` in %, the rest as the thesis wrote them)."""

    exp: int
    label: str
    config: str | None  # config stem in ferlab/research/experiments/configs; None = not a training run
    thesis: dict[str, Any] = field(default_factory=dict)


def _load_reported(path: Path = THESIS_REPORTED) -> tuple[tuple[Row, ...], dict[int, tuple[int, str]]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    rows = tuple(Row(int(r["exp"]), r["label"], r["config"], dict(r.get("thesis", {}))) for r in doc["rows"])
    exp15 = {int(n): (int(ms), str(rating)) for n, (ms, rating) in doc["exp15"]["windows"].items()}
    return rows, exp15


# Sections 5 and 6 in table order. Exp. 15 (Table 5): window N -> (latency ms at 30 fps,
# subjective stability rating 1-5).
ROWS, THESIS_EXP15 = _load_reported()
TARGETS_EXP = 16  # rows measured against FER+ as well (table section of their own)

EXP15_WINDOWS = tuple(THESIS_EXP15)

# What we report per split; "test-all" (all 7,178 test faces) is what the thesis calls its test set.
METRICS = ("accuracy", "macro_f1", "disgust_f1", "mean_conf_correct", "ece")
SPLITS = ("val", "test", "test-all")
# Against FER+'s votes (runner: only when votes are found), on val (selection) and test (reported).
FERPLUS_METRICS = ("ferplus_acc", "nll_votes", "ece_votes", "auroc_unreadable", "acc_at_80")
FERPLUS_SPLITS = ("val", "test")


def configs_of(rows: tuple[Row, ...] = ROWS) -> list[str]:
    """Distinct configs in table order (a run that several rows reuse is listed once)."""
    seen: list[str] = []
    for r in rows:
        if r.config and r.config not in seen:
            seen.append(r.config)
    return seen


# -------------------------------------------------------------------- our numbers

def load_results(out: Path) -> dict[str, list[dict[str, Any]]]:
    """config stem -> the result.json of each seed run under ``out`` (sorted by seed)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(out).glob(f"*/seed*/{RESULT}")):
        res = json.loads(path.read_text())
        found.setdefault(res["config"], []).append(res)
    for runs in found.values():
        runs.sort(key=lambda r: r["seed"])
    return found


def _stats(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and spread (sample std) over seeds of every reported number."""
    agg: dict[str, Any] = {"seeds": [r["seed"] for r in runs],
                           "complete": all(r.get("complete", False) for r in runs),
                           "pretrained": sorted({str(r["pretrained"]) for r in runs}),
                           "mode": sorted({r.get("mode", "") for r in runs})}
    for split in SPLITS:
        for m in METRICS:
            agg[f"{split}/{m}"] = _stats([r["metrics"].get(split, {}).get(m) for r in runs])
    for split in FERPLUS_SPLITS:
        for m in FERPLUS_METRICS:
            agg[f"{split}/{m}"] = _stats([r["metrics"].get(split, {}).get(m) for r in runs])
    agg["best_epoch"] = _stats([r["train"]["best_epoch"] for r in runs])
    agg["epochs_run"] = _stats([r["train"]["epochs_run"] for r in runs])
    agg["train_seconds"] = _stats([r["train"]["train_seconds"] for r in runs])
    return agg


def _fmt(stat: tuple[float | None, float | None] | None, scale: float = 1.0, digits: int = 1) -> str:
    if not stat or stat[0] is None:
        return ""
    mean, sd = stat
    text = f"{mean * scale:.{digits}f}"
    if sd is not None:
        text += f" ± {sd * scale:.{digits}f}"
    return text


def _thesis(value: Any, digits: int = 1) -> str:
    return "" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _duration(stat: tuple[float | None, float | None] | None) -> str:
    if not stat or stat[0] is None:
        return ""
    mean, sd = stat
    unit, div = ("min", 60.0) if mean >= 120 else ("s", 1.0)
    text = f"{mean / div:.1f}"
    if sd is not None:
        text += f" ± {sd / div:.1f}"
    return f"{text} {unit}"


# -------------------------------------------------------------------- writing

CSV_FIELDS = (["exp", "row", "config", "seeds", "n_seeds", "complete", "pretrained", "mode"]
              + [f"{s}_{m}_{k}" for s in SPLITS for m in METRICS for k in ("mean", "std")]
              + [f"{s}_{m}_{k}" for s in FERPLUS_SPLITS for m in FERPLUS_METRICS for k in ("mean", "std")]
              + ["best_epoch_mean", "best_epoch_std", "epochs_run_mean", "train_seconds_mean", "train_seconds_std",
                 "thesis_test_acc", "thesis_disgust_f1", "thesis_macro_f1", "thesis_mean_conf_correct",
                 "thesis_epochs", "thesis_note"])


def build_rows(out: Path, rows: tuple[Row, ...] = ROWS) -> list[dict[str, Any]]:
    results = load_results(out)
    table = []
    for r in rows:
        if r.config is None:
            continue
        runs = results.get(r.config, [])
        agg = aggregate(runs) if runs else None
        table.append({"row": r, "agg": agg})
    return table


def _csv_line(item: dict[str, Any]) -> dict[str, Any]:
    r: Row = item["row"]
    agg = item["agg"] or {}
    line: dict[str, Any] = {"exp": r.exp, "row": r.label, "config": r.config,
                            "seeds": " ".join(map(str, agg.get("seeds", []))), "n_seeds": len(agg.get("seeds", [])),
                            "complete": agg.get("complete", ""), "pretrained": " ".join(agg.get("pretrained", [])),
                            "mode": " | ".join(agg.get("mode", []))}
    pairs = [(s, m) for s in SPLITS for m in METRICS] + [(s, m) for s in FERPLUS_SPLITS for m in FERPLUS_METRICS]
    for s, m in pairs:
        mean, sd = agg.get(f"{s}/{m}", (None, None))
        line[f"{s}_{m}_mean"] = "" if mean is None else round(mean, 6)
        line[f"{s}_{m}_std"] = "" if sd is None else round(sd, 6)
    for key in ("best_epoch", "epochs_run", "train_seconds"):
        mean, sd = agg.get(key, (None, None))
        line[f"{key}_mean"] = "" if mean is None else round(mean, 3)
        if f"{key}_std" in CSV_FIELDS:
            line[f"{key}_std"] = "" if sd is None else round(sd, 3)
    t = r.thesis
    line |= {"thesis_test_acc": t.get("test_acc", ""), "thesis_disgust_f1": t.get("disgust_f1", ""),
             "thesis_macro_f1": t.get("macro_f1", ""), "thesis_mean_conf_correct": t.get("mean_conf_correct", ""),
             "thesis_epochs": t.get("epochs", ""), "thesis_note": t.get("note", "")}
    return line


def _exp15_lines(out: Path) -> list[str]:
    path = out / EXP15_DIR / RESULT
    head = ["", "## Exp. 15: temporal smoothing window (Table 5)", ""]
    if not path.is_file():
        return head + ["TODO, not measured: run `ferlab experiments run --only 15` (needs a trained model: "
                       f"`{FINAL}` from this suite, `--exp15-model PATH`, or a shipped model)."]
    res = json.loads(path.read_text())
    lines = head + [f"Video `{res['video']}` ({res['frames']} frames at {res['fps']:.2f} fps, face found on "
                    f"{res['frames_with_face']}), model `{res['model']}`, {res.get('detector', 'haar')} detector, per-track "
                    f"window over frames (Eq. 26), main track {res.get('main_track_frames', '?')} frames. "
                    "Flips/s: changes of the shown label per second of the main track; lag: median frames from "
                    + ("the onset of the raw run the shown label follows to the shown switch"
                       if res.get("lag_rule") else "a raw label switch to the shown label following it")
                    + ". The thesis rated stability by eye (1-5).", "",
                    "| N | label flips/s (ours) | lag, frames (ours) | lag, ms (ours) | thesis latency, ms | "
                    "thesis stability |", "|---:|---:|---:|---:|---:|---|"]
    for w in res["windows"]:
        n = w["window"]
        lat, stab = THESIS_EXP15.get(n, ("", ""))
        lag = "" if w["lag_frames"] is None else f"{w['lag_frames']:.1f}"
        lag_ms = "" if w["lag_frames"] is None else f"{w['lag_frames'] / res['fps'] * 1000:.0f}"
        lines.append(f"| {n} | {w['flips_per_s']:.2f} | {lag} | {lag_ms} | {lat} | {stab} |")
    return lines


def _targets_lines(items: list[dict[str, Any]]) -> list[str]:
    """Exp. 16: the training targets, measured against FER2013's labels and FER+'s votes."""
    lines = ["", "## Exp. 16: training targets, FER2013 label vs FER+ votes (not in the thesis)", "",
             "Same recipe as Exp. 9, only `train.targets` changes (`ferlab.research.training.targets`). Selected on "
             "PublicTest (val acc = FER2013 labels), reported on PrivateTest (test): FER2013 acc over all faces; "
             "FER+ acc against the FER+ majority over faces that have a 7-class one; NLL and ECE against the "
             "vote distribution (raw softmax); AUROC of 1 - max temperature-scaled probability for faces FER+ "
             "finds unreadable; acc@80% = FER+ accuracy of the 80% most confident faces "
             "(`ferlab.research.evaluation.uncertainty`). Blank = not measured (FER+ columns need the votes).", "",
             "| row | seeds | val acc % | val FER+ acc % | test acc % | test FER+ acc % | NLL vs votes | "
             "ECE vs votes | AUROC unreadable | acc@80% (FER+) % |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for it in items:
        r: Row = it["row"]
        if r.exp != TARGETS_EXP:
            continue
        a = it["agg"] or {}
        seeds = ",".join(map(str, a.get("seeds", [])))
        if a and not a["complete"]:
            seeds += " (partial)"
        lines.append("| " + " | ".join([
            f"{r.label} (`{r.config}`)", seeds, _fmt(a.get("val/accuracy"), 100), _fmt(a.get("val/ferplus_acc"), 100),
            _fmt(a.get("test/accuracy"), 100), _fmt(a.get("test/ferplus_acc"), 100),
            _fmt(a.get("test/nll_votes"), 1, 3), _fmt(a.get("test/ece_votes"), 1, 3),
            _fmt(a.get("test/auroc_unreadable"), 1, 3), _fmt(a.get("test/acc_at_80"), 100)]) + " |")
    return lines


def write_tables(out: str | Path, rows: tuple[Row, ...] = ROWS) -> tuple[Path, Path]:
    """(Re)write ``OUT/results.md`` and ``OUT/results.csv`` from every finished run under OUT."""
    out = Path(out)
    items = build_rows(out, rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for item in items:
        w.writerow(_csv_line(item))
    csv_path = out / "results.csv"
    write_text(csv_path, buf.getvalue())

    modes = sorted({m for it in items if it["agg"] for m in it["agg"]["mode"]})
    md = ["# Thesis section 5, reproduced", "",
          "Ours: checkpoint selected on PublicTest (val), evaluated on PrivateTest (test) and on all 7,178 test "
          "faces (test-all, what the thesis calls its test set). Mean ± sample std over the seeds run. "
          "F1 and confidence columns are on test-all. Best epoch = epochs to converge (selection epoch). "
          "**Thesis** columns are the numbers the thesis reports (`ferlab/research/experiments/thesis_reported.json`), "
          "not measured here. Blank = not measured / not reported.", ""]
    if modes:
        md += ["Run settings: " + "; ".join(f"`{m}`" for m in modes), ""]
    md += ["| Exp | row | seeds | val acc % | test acc % | test-all acc % | **thesis** acc % | macro-F1 | "
           "**thesis** macro-F1 | disgust F1 | **thesis** disgust F1 | conf. when correct | **thesis** conf. | "
           "best epoch | **thesis** epochs | train time | pretrained |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for it in items:
        r: Row = it["row"]
        if r.exp == TARGETS_EXP:
            continue
        a = it["agg"] or {}
        seeds = ",".join(map(str, a.get("seeds", [])))
        if a and not a["complete"]:
            seeds += " (partial)"
        t = r.thesis
        md.append("| " + " | ".join([
            str(r.exp), f"{r.label} (`{r.config}`)", seeds,
            _fmt(a.get("val/accuracy"), 100), _fmt(a.get("test/accuracy"), 100), _fmt(a.get("test-all/accuracy"), 100),
            _thesis(t.get("test_acc")),
            _fmt(a.get("test-all/macro_f1"), 1, 3), _thesis(t.get("macro_f1"), 3),
            _fmt(a.get("test-all/disgust_f1"), 1, 2), _thesis(t.get("disgust_f1"), 2),
            _fmt(a.get("test-all/mean_conf_correct"), 1, 2), _thesis(t.get("mean_conf_correct"), 2),
            _fmt(a.get("best_epoch"), 1, 1), _thesis(t.get("epochs")),
            _duration(a.get("train_seconds")), " ".join(a.get("pretrained", [])),
        ]) + " |")
    notes = [f"- Exp. {r.exp} ({r.label}): {r.thesis['note']}" for r in rows if r.thesis.get("note")]
    md += ["", "Thesis notes:", *notes]
    md += _exp15_lines(out)
    md += _targets_lines(items)
    md_path = out / "results.md"
    write_text(md_path, "\n".join(md) + "\n")
    return md_path, csv_path
