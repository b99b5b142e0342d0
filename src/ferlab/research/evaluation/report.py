"""Human-readable views of a metrics dict: the terminal summary and ``report.md``."""
from __future__ import annotations

from typing import Any


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """Thesis Table 7 rows (class, precision, recall, F1) + support, then the summary rows."""
    rows = [(name, _f(m["precision"]), _f(m["recall"]), _f(m["f1"]), str(m["support"]))
            for name, m in metrics["per_class"].items()]
    rows.append(("accuracy", "", "", _f(metrics["accuracy"]), str(metrics["n"])))
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        m = metrics[key]
        rows.append((label, _f(m["precision"]), _f(m["recall"]), _f(m["f1"]), str(m["support"])))
    return rows


def _calibration_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    cal = metrics["calibration"]
    return [("mean confidence, correct", _f(cal["mean_confidence_correct"])),
            ("mean confidence, wrong", _f(cal["mean_confidence_wrong"])),
            (f"ECE ({cal['ece_bins']} bins)", _f(cal["ece"], 4)),
            ("NLL", _f(cal["nll"], 4))]


HEADER = ("class", "precision", "recall", "F1", "support")


def summary_table(metrics: dict[str, Any]) -> str:
    """Plain-text table for the terminal, aligned like scikit-learn's classification report."""
    rows = _rows(metrics)
    w0 = max(len(r[0]) for r in rows + [HEADER])
    line = lambda r: f"{r[0]:<{w0}}  {r[1]:>9}  {r[2]:>7}  {r[3]:>6}  {r[4]:>7}"  # noqa: E731
    out = [line(HEADER)]
    n_cls = len(metrics["per_class"])
    for i, r in enumerate(rows):
        if i == n_cls:
            out.append("")
        out.append(line(r))
    out.append("")
    for label, value in _calibration_rows(metrics):
        out.append(f"{label:<26}{value:>8}")
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]], align: str = "r") -> str:
    sep = ["---"] + ([("---:" if align == "r" else "---")] * (len(header) - 1))
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(metrics: dict[str, Any], info: dict[str, Any]) -> str:
    """``report.md``: the Table 7 layout, calibration, the confusion matrix and the figures.

    ``info`` holds provenance strings (model, data path, split, TTA) that are fine in a report
    but kept out of ``metrics.json`` so that file only depends on checkpoint and data."""
    rows = _rows(metrics)
    n_cls = len(metrics["per_class"])
    table_rows = [list(r) for r in rows[:n_cls]]
    table_rows += [[f"**{r[0]}**"] + [f"**{c}**" if c else "" for c in r[1:]] for r in rows[n_cls:]]
    names = metrics["class_names"]
    cm_rows = [[names[i]] + [str(v) for v in row] for i, row in enumerate(metrics["confusion_matrix"])]
    parts = [
        f"# Evaluation: {info.get('model', '?')} on {info.get('split', '?')}",
        "",
        "\n".join(f"- **{k}**: {v}" for k, v in info.items()),
        "",
        f"Accuracy **{metrics['accuracy']:.4f}** on {metrics['n']} faces; "
        f"macro F1 {metrics['macro_avg']['f1']:.4f}, weighted F1 {metrics['weighted_avg']['f1']:.4f}.",
        "",
        "## Per-class performance (thesis Table 7 layout)",
        "",
        _md_table(list(HEADER), table_rows),
        "",
        "## Calibration",
        "",
        _md_table(["measure", "value"], [list(r) for r in _calibration_rows(metrics)]),
        "",
        "![reliability diagram](reliability.png)",
        "",
        "## Confusion matrix (rows = true class, columns = predicted)",
        "",
        _md_table(["true \\ pred"] + names, cm_rows),
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
    ]
    return "\n".join(parts)
