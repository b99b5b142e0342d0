#!/usr/bin/env python3
"""Write every number in the docs from the artefacts it describes.

    .venv/bin/python maintainers/scripts/render_docs.py          # rewrite the generated blocks
    .venv/bin/python maintainers/scripts/render_docs.py --check  # exit 1 if a document is stale

Only the blocks between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` are
rewritten; the prose around them is the authors'. The blocks and their sources:

=================================  ================================================================
README.md ``results``               the models in the box (:func:`ferlab.models.hub.shipped_models`:
                                    ``NAME.onnx`` + ``NAME.json``), maintainers/benchmarks/
                                    results-video-scale.json (ms per face; results-cpu.md for a
                                    network it lacks) and results-real-photos.json (whole pipeline
                                    on real photos)
MODEL_CARD.md ``card-*``            the same, plus maintainers/benchmarks/results-fidelity.json
                                    (detector recall by face size)
maintainers/zoo/README.md ``index``     every zoo model (``maintainers/zoo/NAME.safetensors`` + ``NAME.json``)
maintainers/zoo/README.md ``transfer``  the pretrained backbones beside the box models: sidecars, real
                                    photos and ms per face / 4-face fps from the same two files
maintainers/zoo/README.md ``NAME``      one zoo model's sidecar: config, starting point, teachers, notes,
                                    recalibration, metrics; which box model was made from it. A block
                                    whose sidecar does not exist yet says so, and a zoo model without
                                    a block is an error, so the record cannot silently miss a model.
=================================  ================================================================

Metrics in the sidecars come from ``ferlab evaluate`` (maintainers/scripts/evaluate_shipped.sh copies them in
through maintainers/scripts/ship_model.py); nothing is typed by hand. Accuracies carry a 95% Wilson score
interval computed here from the accuracy and the number of faces, because a test split of 3,589
faces leaves about +-1.5 points of sampling error that a bare percentage hides.
tests/test_docs.py runs ``--check``, so a document that disagrees with an artefact fails the suite.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

from ferlab.constants import CLASS_NAMES  # noqa: E402
from ferlab.models.hub import DEFAULT_MODEL, ShippedModel, shipped_models  # noqa: E402

README = REPO / "README.md"
MODEL_CARD = REPO / "src" / "ferlab" / "pretrained" / "MODEL_CARD.md"
ZOO = REPO / "maintainers" / "zoo"
ZOO_README = ZOO / "README.md"
BENCH_CPU = REPO / "maintainers" / "benchmarks" / "results-cpu.md"
BENCH_REAL = REPO / "maintainers" / "benchmarks" / "results-real-photos.json"
BENCH_FIDELITY = REPO / "maintainers" / "benchmarks" / "results-fidelity.json"
# ms per face and 4-face fps of every model in one run (bench_inference.py section 5)
BENCH_SPEED = REPO / "maintainers" / "benchmarks" / "results-video-scale.json"
BENCH_LINE = re.compile(r"^\s*(?P<model>\S+)\s+ORT fp32\s+batch (?P<batch>\d+):\s+(?P<ms>[\d.]+) ms/face", re.M)
BLOCK = re.compile(r"<!-- generated:(?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /generated:(?P=name) -->", re.S)
# The data folder as the sidecars' notes and configs name it on the machine that trained them;
# the docs write DATA instead, so they never point outside the repository.
DATA_PATHS = re.compile(r"(?:\.\./shared|/work/shared)/data/fer2013")
Z95 = 1.959963984540054
SPLITS = (("val", "PublicTest"), ("test", "PrivateTest"), ("test-tta", "PrivateTest, flip TTA"),
          ("test-all", "all 7,178"), ("test-all-tta", "all 7,178, flip TTA"))


# -- numbers -----------------------------------------------------------------------------------

def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` measured on ``n`` independent faces."""
    if n <= 0:
        return (math.nan, math.nan)
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def pct(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def count(value: float | int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def with_ci(p: float | None, n: int | None, digits: int = 1) -> str:
    """``70.02% [68.5, 71.5]``: the accuracy and its 95% interval (points)."""
    if p is None or not n:
        return pct(p)
    lo, hi = wilson(p, int(n))
    return f"{pct(p)} [{100 * lo:.{digits}f}, {100 * hi:.{digits}f}]"


def split(m: ShippedModel, key: str) -> dict:
    return m.meta.get("metrics", {}).get(key, {}) or {}


def metric(m: ShippedModel, key: str, name: str = "accuracy") -> float | None:
    value = split(m, key).get(name)
    return None if value is None else float(value)


def ferplus(m: ShippedModel, key: str, name: str) -> float | None:
    value = split(m, key).get("ferplus", {}).get(name)
    return None if value is None else float(value)


def acc_ci(m: ShippedModel, key: str) -> str:
    return with_ci(metric(m, key), split(m, key).get("n"))


def ferplus_ci(m: ShippedModel, key: str = "test") -> str:
    return with_ci(ferplus(m, key, "accuracy"), split(m, key).get("ferplus", {}).get("n_majority7"))


# -- artefacts ---------------------------------------------------------------------------------

def zoo_models(folder: Path = ZOO) -> list[ShippedModel]:
    """``maintainers/zoo/NAME.safetensors`` + ``NAME.json``, read here rather than through ``$FERLAB_ZOO`` so
    the record always describes this repository's zoo."""
    out = []
    for j in sorted(folder.glob("*.json")):
        weights = j.with_suffix(".safetensors")
        if weights.is_file():
            out.append(ShippedModel(j.stem, weights, json.loads(j.read_text())))
    return out


def parameters(m: ShippedModel) -> int:
    """Learned parameters in the weights file (BatchNorm running statistics not counted)."""
    skip = ("running_mean", "running_var", "num_batches_tracked")
    total = 0
    if m.path.suffix == ".onnx":
        import onnx
        from onnx import TensorProto

        for t in onnx.load(str(m.path)).graph.initializer:
            if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16) and not any(s in t.name for s in skip):
                total += math.prod(t.dims)
        return total
    from safetensors import safe_open

    with safe_open(str(m.path), framework="numpy") as fh:
        for key in fh.keys():
            if not key.endswith(skip):
                total += math.prod(fh.get_slice(key).get_shape())
    return total


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ms_per_face(text: str) -> dict[tuple[str, int], float]:
    """(model name, batch) -> ms per face, ONNX Runtime fp32, from the benchmark's output."""
    return {(g["model"], int(g["batch"])): float(g["ms"]) for g in BENCH_LINE.finditer(text)}


class Artefacts:
    """Everything the blocks read, loaded once."""

    def __init__(self) -> None:
        self.box = shipped_models()
        self.zoo = zoo_models()
        self.bench = ms_per_face(BENCH_CPU.read_text()) if BENCH_CPU.is_file() else {}
        real = json.loads(BENCH_REAL.read_text()) if BENCH_REAL.is_file() else {}
        self.real_photos = real
        self.real_by_model = {r["model"]: r for r in real.get("models", [])}
        self.fidelity = json.loads(BENCH_FIDELITY.read_text()) if BENCH_FIDELITY.is_file() else {}
        self.speed_rows = _bench_rows(BENCH_SPEED, "models")

    def zoo_name(self, m: ShippedModel) -> str:
        return str(m.meta.get("zoo_name", m.name))

    def box_of(self, zoo_name: str) -> ShippedModel | None:
        return next((b for b in self.box if b.meta.get("zoo_name") == zoo_name), None)

    def speed(self, m: ShippedModel) -> tuple[float | None, float | None, str | None]:
        """ms per face at batch 1 and 4 for ``m``'s network, and the benchmark row they come
        from: its own, else that of a zoo model with the same architecture and options (the
        same network computes the same operations whatever its weights)."""
        names = [m.name, self.zoo_name(m)]
        names += [z.name for z in self.zoo if z.meta.get("model") == m.meta.get("model")]
        for name in names:  # the models side by side in one run first, then the older CPU record
            if name in self.speed_rows:
                row = self.speed_rows[name]
                return row["ms_per_face_b1"], row["ms_per_face_b4"], name
        for name in names:
            if (name, 1) in self.bench:
                return self.bench[(name, 1)], self.bench.get((name, 4)), name
        return None, None, None

    def real(self, m: ShippedModel) -> dict | None:
        return self.real_by_model.get(m.name) or self.real_by_model.get(self.zoo_name(m))


def reads(m: ShippedModel) -> str:
    targets = m.meta.get("config", {}).get("train", {}).get("targets", "fer2013")
    return {"fer2013": "FER2013's label", "ferplus-smoothing": "FER2013's label",
            "ferplus-majority": "the FER+ majority", "ferplus-soft": "the FER+ vote share"}.get(targets, targets)


def architecture(m: ShippedModel) -> str:
    cfg = dict(m.meta.get("model", {}))
    name = cfg.pop("name", "?")
    cfg.pop("pretrained", None)
    opts = ", ".join(f"{k}={v}" for k, v in cfg.items())
    return f"`{name}` ({opts}); {parameters(m) / 1e6:.1f}M parameters"


def table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# -- README.md ---------------------------------------------------------------------------------

def readme_results(a: Artefacts) -> str:
    rows = []
    for m in a.box:
        ms, _, _ = a.speed(m)
        real = a.real(m)
        rows.append((f"`{m.name}`" + (" (default)" if m.name == DEFAULT_MODEL else ""), reads(m),
                     f"**{acc_ci(m, 'test')}**", ferplus_ci(m), num(metric(m, "test", "macro_f1")),
                     num(metric(m, "test", "ece")), pct(real["accuracy"], 1) if real else "—",
                     "—" if ms is None else f"{ms:.2f}"))
    lines = table(rows, ("model", "trained to say", "PrivateTest accuracy [95% CI]", "FER+ majority agreement [95% CI]",
                         "macro-F1", "ECE", "real photos", "ms/face (CPU)"))
    n = split(a.box[0], "test").get("n") if a.box else None
    lines += ["", f"PrivateTest: {count(n)} FER2013 test faces, never used for any choice; FER+ majority: the "
                  "same faces against what most of ten people said. Real photos: the whole pipeline on "
                  f"{count(a.real_photos.get('photos'))} labelled news photos (maintainers/benchmarks/results-real-photos.txt). "
                  "ms/face: ONNX Runtime on one 2-core CPU, batch 1 (maintainers/benchmarks/results-video-scale.txt, "
                  "section 5)."]
    return "\n".join(lines)


# -- MODEL_CARD.md -----------------------------------------------------------------------------

def card_metrics(a: Artefacts) -> str:
    n_test = count(split(a.box[0], "test").get("n"))
    n_fp = count(ferplus(a.box[0], "test", "n_majority7"))

    def trained(m: ShippedModel) -> str:
        return f"{count(m.meta.get('train_images'))} faces, {reads(m)}"

    def flagged(m: ShippedModel) -> str:
        return f"{pct(ferplus(m, 'test', 'flagged'), 1)}; {num(ferplus(m, 'test', 'auroc_unreadable'))}"

    def real(m: ShippedModel) -> str:
        r = a.real(m)
        return "—" if r is None else with_ci(r["accuracy"], r["photos"])

    spec: list[tuple[str, Callable[[ShippedModel], str]]] = [
        ("Trained on", trained),
        ("Size", lambda m: f"{parameters(m) / 1e6:.1f}M parameters, {m.path.stat().st_size / 1e6:.1f} MB"),
        (f"PrivateTest accuracy (n = {n_test})", lambda m: f"**{acc_ci(m, 'test')}**"),
        (f"All {count(split(a.box[0], 'test-all').get('n'))} test faces", lambda m: acc_ci(m, "test-all")),
        (f"FER+ majority agreement (n = {n_fp})", lambda m: f"**{ferplus_ci(m)}**"),
        ("Macro-F1 / ECE", lambda m: f"{num(metric(m, 'test', 'macro_f1'))} / {num(metric(m, 'test', 'ece'))}"),
        ("Flagged `uncertain`; AUROC for unreadable faces", flagged),
        ("FER+ agreement, 80% most confident faces", lambda m: pct(ferplus(m, "test", "accuracy_at_80"), 1)),
        (f"Real photos, whole pipeline (n = {count(a.real_photos.get('photos'))})", real),
    ]
    head = ("",) + tuple(f"`{m.name}`" + (" (default)" if m.name == DEFAULT_MODEL else "") for m in a.box)
    rows = [(label,) + tuple(fn(m) for m in a.box) for label, fn in spec]
    return "\n".join(table(rows, head))


def card_classes(a: Artefacts) -> str:
    """Per-class F1 on PrivateTest and recall on the real photos, both models per class."""
    names = "/".join(f"`{m.name}`" for m in a.box)
    f1 = ", ".join(f"{c} " + "/".join(num(split(m, "test").get("per_class_f1", {}).get(c), 2) for m in a.box)
                   for c in CLASS_NAMES)
    lines = [f"- PrivateTest F1, {names}: {f1}."]
    if all(a.real(m) for m in a.box):
        per = a.real_photos.get("per_class", {})
        rec = ", ".join(f"{c} " + "/".join(pct(a.real(m)["recall"].get(c), 0) for m in a.box)
                        + (f" (of {per[c]})" if per.get(c) != max(per.values()) else "") for c in CLASS_NAMES)
        lines.append(f"- Real-photo recall ({max(per.values())} photos per class unless noted): {rec}.")
    return "\n".join(lines)


def card_failures(a: Artefacts) -> str:
    """The failure modes that the committed measurements put a number on."""
    lines = []
    worst = []
    for m in a.box:
        f1 = split(m, "test").get("per_class_f1", {})
        if f1:
            c = min(f1, key=f1.get)
            worst.append(f"{c} for `{m.name}` (F1 {num(f1[c], 2)})")
    if worst:
        lines.append(f"- **Hardest class**: {'; '.join(worst)}.")
    dis = [(m, a.real(m)) for m in a.box if a.real(m)]
    if dis:
        vals = ", ".join(f"{pct(r['recall']['disgust'], 0)} (`{m.name}`)" for m, r in dis)
        lines.append(f"- **Disgust on real photos** is almost never said: recall {vals}.")
    fid = a.fidelity.get("settings", {})
    default = next((v for k, v in fid.items() if "(default)" in k), None)
    if default:
        bands = default.get("recall_by_side", {})
        band = ", ".join(f"{pct(v, 0)} at {k} px" for k, v in bands.items())
        lines.append(f"- **Small faces**: the detector finds {band} in 640×480 frames; a missed face gets no "
                     f"reading (pipeline {pct(default['pipeline_acc'], 1)} right against the classifier's "
                     f"{pct(default['direct_acc'], 1)} on the same faces).")
    return "\n".join(lines)


# -- maintainers/zoo/README.md -----------------------------------------------------------------------------

def _config_file(m: ShippedModel) -> str:
    name = m.meta.get("config", {}).get("name")
    if not name:
        return "—"
    path = REPO / "maintainers" / "configs" / f"{name}.yaml"
    return f"`maintainers/configs/{name}.yaml`" if path.is_file() else f"`{name}` (built-in)"


def _source(m: ShippedModel) -> str | None:
    """The zoo model a recalibrated model was made from (no training of its own)."""
    rec = m.meta.get("recalibration")
    return rec.get("source", {}).get("name") if isinstance(rec, dict) else None


def _start(m: ShippedModel) -> str:
    if _source(m):
        return f"the zoo model `{_source(m)}`, recalibrated (no training)"
    t = m.meta.get("config", {}).get("train", {})
    if t.get("init_from"):
        return f"the zoo model `{t['init_from']}`"
    pre = m.meta.get("config", {}).get("model", {}).get("pretrained", "none")
    return "random initialisation" if pre in (None, "none") else f"{pre} weights"


def _teachers(m: ShippedModel) -> str:
    t = m.meta.get("config", {}).get("train", {})
    if not t.get("teachers"):
        return "none"
    names = ", ".join(f"`{n}`" for n in t["teachers"])
    return f"{names} (weight {t.get('teacher_weight')}, {'flip-averaged' if t.get('teacher_tta') else 'plain'})"


def _recipe(m: ShippedModel) -> str:
    t = m.meta.get("config", {}).get("train", {})
    if not t:
        return "—"
    parts = [f"targets `{t.get('targets', 'fer2013')}`", f"label smoothing {t.get('label_smoothing')}",
             f"class weights {'on' if t.get('class_weights') else 'off'}",
             f"{t.get('optimizer')} lr {t.get('lr')}, wd {t.get('weight_decay')}, batch {t.get('batch_size')}",
             f"{t.get('scheduler')} schedule, {t.get('epochs')} epochs"]
    if t.get("freeze_epochs"):
        parts.append(f"backbone frozen {t['freeze_epochs']} epochs")
    aug = m.meta.get("config", {}).get("augment", {})
    if aug:
        parts.append(f"augment: flip {aug.get('hflip')}, rotation ±{aug.get('rotation')}°, translate "
                     f"{aug.get('translate')}, scale {aug.get('scale')}, erasing p {aug.get('erasing_p')}")
    return "; ".join(parts)


def zoo_index(a: Artefacts) -> str:
    rows = []
    for m in a.zoo:
        box = a.box_of(m.name)
        rows.append((f"[`{m.name}`](#{m.name})", f"`{m.arch}`", _config_file(m), _start(m),
                     reads(m), acc_ci(m, "val"), acc_ci(m, "test"), ferplus_ci(m),
                     f"`{box.name}`" if box else "—"))
    return "\n".join(table(rows, ("model", "network", "config", "starts from", "trained to say", "PublicTest",
                                  "PrivateTest", "FER+ majority (PrivateTest)", "in the box as")))


TRANSFER_NETS = ("mobilenet_v2", "efficientnet_lite0")


def _bench_rows(path: Path, key: str) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {r["model"]: r for r in json.loads(path.read_text()).get(key, []) if "model" in r}


def zoo_transfer(a: Artefacts) -> str:
    """Pretrained vs scratch: the transfer-learning runs beside the default model, one line each,
    from their sidecars and the two benchmarks that measured them in one run each."""
    real, speed = a.real_by_model, a.speed_rows
    box = sorted(a.box, key=lambda b: b.name != DEFAULT_MODEL)
    rows = []
    # the pretrained backbones, and every FER+ reader (the ones the human-vote model in the box is chosen from)
    votes = [z for z in a.zoo if z.meta.get("config", {}).get("train", {}).get("targets") == "ferplus-soft"]
    for m in box + [z for z in a.zoo if z.arch in TRANSFER_NETS or z in votes]:
        mod = m.meta.get("model", {})
        bench_name = m.name
        r, v = real.get(bench_name, {}), speed.get(bench_name, {})
        rows.append((f"`{bench_name}`" + (" (box, default)" if m.name == DEFAULT_MODEL else " (box)" if m in box else ""),
                     f"`{m.arch}` {mod.get('input_size', 48)} px", _start(m),
                     str(m.meta.get("config", {}).get("train", {}).get("epochs", "—")),
                     acc_ci(m, "val"), acc_ci(m, "test"), acc_ci(m, "test-all"), ferplus_ci(m, "val"), ferplus_ci(m),
                     pct(r.get("accuracy"), 1), f"{v['ms_per_face_b1']:.2f}" if v else "—",
                     f"{v['fps']:.0f}" if v else "—"))
    return "\n".join(table(rows, ("model", "network, input", "starts from", "epochs", "PublicTest", "PrivateTest",
                                  "all 7,178", "FER+ majority, PublicTest", "FER+ majority, PrivateTest",
                                  "real photos", "ms/face", "4-face fps")))


def zoo_model(a: Artefacts, name: str) -> str:
    m = next((z for z in a.zoo if z.name == name), None)
    if m is None:
        return (f"*No sidecar yet: maintainers/zoo/{name}.json is written when its training run is put in the zoo "
                f"(maintainers/scripts/ship_model.py, then maintainers/scripts/evaluate_shipped.sh measures it); run "
                f"maintainers/scripts/render_docs.py then. No number is shown before it is measured.*")
    box = a.box_of(m.name)
    t = m.meta.get("config", {}).get("train", {})
    theirs = f" (of `{_source(m)}`)" if _source(m) else ""
    lineage = [
        ("In the box as", f"`{box.name}` (`src/ferlab/pretrained/{box.path.name}`)" if box else "— (zoo only)"),
        ("Network", architecture(m)),
        ("Weights", f"{m.meta.get('dtype', 'float32')} safetensors, {m.path.stat().st_size / 1e6:.1f} MB, "
                    f"SHA-256 `{sha256(m.path)[:16]}…`"),
        ("Made from" if _source(m) else "Starts from", _start(m)),
        ("Config" + theirs, _config_file(m)),
        ("Teachers" + theirs, _teachers(m)),
        ("Recipe" + theirs, _recipe(m)),
        ("Selected" + theirs, f"epoch {m.meta.get('epoch', '—')} of {t.get('epochs', '—')}, best `{t.get('select_metric', 'val_acc')}` "
                     f"on PublicTest"),
        ("Training faces", count(m.meta.get("train_images"))),
    ]
    rec = m.meta.get("recalibration")
    if isinstance(rec, dict):
        held = rec.get("cross_fitted", {})
        lineage.append(("Recalibration", f"vector scaling of `{rec.get('source', {}).get('name')}`'s logits, fitted on "
                                         f"PublicTest (n = {count(rec.get('fitted_on', {}).get('n'))}); PublicTest "
                                         f"accuracy on held-out halves {pct(held.get('without', {}).get('accuracy'))} → "
                                         f"{pct(held.get('with', {}).get('accuracy'))}, ECE "
                                         f"{num(held.get('without', {}).get('ece'))} → {num(held.get('with', {}).get('ece'))}"))
    lines = table(lineage, ("", ""))
    notes = m.meta.get("notes") or []
    if notes:
        lines += ["", "Its sidecar's notes, verbatim but for the data folder, written `DATA`:", ""]
        lines += [f"- {DATA_PATHS.sub('DATA', str(n))}" for n in notes]
    rows = []
    for key, label in SPLITS:
        if not split(m, key):
            continue
        rows.append((label, acc_ci(m, key), num(metric(m, key, "macro_f1")), num(metric(m, key, "ece")),
                     num(metric(m, key, "nll")), ferplus_ci(m, key), num(ferplus(m, key, "auroc_unreadable")),
                     pct(ferplus(m, key, "flagged"), 1)))
    lines += [""] + table(rows, ("split", "accuracy [95% CI]", "macro-F1", "ECE", "NLL", "FER+ majority [95% CI]",
                                 "AUROC unreadable", "flagged uncertain"))
    f1 = split(m, "test").get("per_class_f1", {})
    if f1:
        lines += ["", "PrivateTest F1: " + ", ".join(f"{c} {num(f1.get(c))}" for c in CLASS_NAMES) + "."]
    cal, cal_tta = m.meta.get("calibration"), m.meta.get("calibration_tta")
    if isinstance(cal, dict):
        flip = (f"; with flip TTA {cal_tta['temperature']:.3f} and {cal_tta['threshold']:.3f}"
                if isinstance(cal_tta, dict) else "")
        lines += ["", f"`uncertain` flag, fitted on PublicTest against the FER+ votes: temperature "
                      f"{cal['temperature']:.3f}, threshold {cal['threshold']:.3f}{flip}."]
    return "\n".join(lines)


# -- documents ---------------------------------------------------------------------------------

SHORT_NOTE = "<!-- maintainers/scripts/render_docs.py -->\n"  # the model card counts its words
NOTE = ("<!-- Written by maintainers/scripts/render_docs.py from {src}; edit those (or the script), not this block. -->\n")


def blocks_for(path: Path, a: Artefacts) -> dict[str, Callable[[], str]]:
    """Block name -> renderer for one document (a zoo README block named after a model)."""
    if path == README:
        return {"results": lambda: NOTE.format(src="the box models' sidecars and maintainers/benchmarks/") + readme_results(a)}
    if path == MODEL_CARD:
        return {"card-metrics": lambda: SHORT_NOTE + card_metrics(a),
                "card-classes": lambda: SHORT_NOTE + card_classes(a),
                "card-failures": lambda: SHORT_NOTE + card_failures(a)}
    if path == ZOO_README:
        names = {mt.group("name") for mt in BLOCK.finditer(path.read_text())} | {m.name for m in a.zoo}
        out: dict[str, Callable[[], str]] = {
            "index": lambda: NOTE.format(src="maintainers/zoo/*.json") + zoo_index(a),
            "transfer": lambda: NOTE.format(src="maintainers/zoo/*.json, maintainers/benchmarks/results-real-photos.json and "
                                                "maintainers/benchmarks/results-video-scale.json") + zoo_transfer(a)}
        for name in sorted(names - {"index", "transfer"}):
            out[name] = (lambda n=name: NOTE.format(src=f"maintainers/zoo/{n}.json") + zoo_model(a, n))
        return out
    raise KeyError(path)


def render_one(path: Path, a: Artefacts) -> str:
    text = path.read_text()
    renderers = blocks_for(path, a)
    found = {mt.group("name") for mt in BLOCK.finditer(text)}
    missing = sorted(set(renderers) - found)
    if missing:
        raise SystemExit(f"{_shown(path)}: no <!-- generated:NAME --> ... <!-- /generated:NAME --> block for "
                         f"{', '.join(missing)}" + (" (every zoo model needs its section)" if path == ZOO_README else ""))
    unknown = sorted(found - set(renderers))
    if unknown:
        raise SystemExit(f"{_shown(path)}: no renderer for block(s) {', '.join(unknown)}")

    def sub(mt: re.Match) -> str:
        name = mt.group("name")
        return f"<!-- generated:{name} -->\n{renderers[name]().rstrip()}\n<!-- /generated:{name} -->"

    return BLOCK.sub(sub, text)


def render() -> dict[Path, str]:
    a = Artefacts()
    return {path: render_one(path, a) for path in (README, MODEL_CARD, ZOO_README)}


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
        print(f"out of date (run maintainers/scripts/render_docs.py): {names}")
        return 1
    print(("stale: " if args.check else "written: ") + (names or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
