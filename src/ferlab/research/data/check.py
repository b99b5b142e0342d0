"""``ferlab data check``: what is in a FER2013 copy, and what is wrong with FER2013 itself.

Before trusting any accuracy number people need to know: does this copy have the expected
counts per split and class (thesis Table 1), what class weights Eq. (1) gives, and how much of
the known dirt it carries: identical images (the same face counted twice), identical images
in both train and test (leakage inflates test accuracy), identical images with different
labels (label noise that no model can fit) and near-blank frames that are not faces.
Where FER+'s ten crowd votes per face are at hand (a ``ferplus/`` folder beside the data, or
``--ferplus PATH``), it also reports how often FER2013's label is the crowd's majority: the
size of the label noise that duplicates alone do not show.

Duplicates are found on decoded pixels, not file bytes, so the check behaves the same for the
folder layout and the CSV. On the Kaggle copy this gives exactly the same 1,516 groups as
hashing the JPEG file bytes (checked group by group; tests/test_data.py pins the numbers).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ...constants import CLASS_NAMES, NUM_CLASSES
from ...errors import FerlabError
from .dataset import SPLITS, USAGES, FerData, class_weights
from .fer2013 import load_fer2013
from .ferplus import agreement_by_split, load_ferplus, locate_ferplus, votes_file_for

BLANK_STD = 2.0  # pixel standard deviation (0-255 scale) below which an image holds no face
SPLIT_LABELS = {"train": "train (Training)", "val": "val (PublicTest)", "test": "test (PrivateTest)",
                "test-all": "test-all (Public+Private)"}


@dataclass
class DuplicateGroup:
    """Images with byte-identical decoded pixels."""

    names: list[str]
    labels: list[str]
    usages: list[str]

    @property
    def leaks(self) -> bool:
        """The same face is in Training and in a test split: a model can memorise test answers."""
        return "Training" in self.usages and any(u != "Training" for u in self.usages)

    @property
    def conflicting(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass
class BlankImage:
    name: str
    label: str
    usage: str
    std: float


@dataclass
class FerPlusCheck:
    """FER2013 label vs FER+ majority vote per split (see :mod:`ferlab.research.data.ferplus`).

    ``error`` is set instead of ``splits`` when a votes file was found beside the data but
    could not be used: the check still runs, and says why the FER+ part is missing.
    """

    source: str
    # split -> files, no_votes, majority7, agree, percent (see FerPlusVotes.agreement)
    splits: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    unmatched: int = 0  # faces the votes file does not list
    error: str = ""


@dataclass
class CheckReport:
    source: str
    n_images: int
    counts: dict[str, dict[str, int]]  # split -> class -> count, each with a "total"
    class_weights: dict[str, float]  # Eq. (1) on the training split
    duplicates: list[DuplicateGroup]
    near_blank: list[BlankImage]
    skipped: list[str] = field(default_factory=list)
    blank_std: float = BLANK_STD
    ferplus: FerPlusCheck | None = None

    @property
    def leakage(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicates if g.leaks]

    @property
    def conflicts(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicates if g.conflicting]

    def summary(self) -> dict[str, int]:
        """The headline numbers, comparable with the data README."""
        return {
            "images": self.n_images,
            "skipped": len(self.skipped),
            "duplicate_groups": len(self.duplicates),
            "duplicate_files": sum(len(g.names) for g in self.duplicates),
            "leakage_groups": len(self.leakage),
            # test images whose exact pixels also appear in Training: the inflation of test accuracy
            "leaked_test_images": sum(sum(u != "Training" for u in g.usages) for g in self.leakage),
            "val_test_groups": sum({"PublicTest", "PrivateTest"} <= set(g.usages) for g in self.duplicates),
            "conflict_groups": len(self.conflicts),
            "near_blank": len(self.near_blank),
        }

    def to_dict(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "summary": self.summary(),
            "counts": self.counts,
            "class_weights": self.class_weights,
            "blank_std": self.blank_std,
            "duplicates": [asdict(g) | {"leaks": g.leaks, "conflicting": g.conflicting} for g in self.duplicates],
            "near_blank": [asdict(b) for b in self.near_blank],
            "skipped": self.skipped,
        }
        if self.ferplus is not None:
            out["ferplus"] = asdict(self.ferplus)
        return out

    def format_text(self, examples: int = 5) -> str:
        s = self.summary()
        lines = [f"FER2013 at {self.source}: {s['images']:,} images"
                 + (f", {s['skipped']:,} bad files skipped" if s["skipped"] else "")]
        width = max(len(v) for v in SPLIT_LABELS.values())
        lines.append("")
        lines.append(f"{'split':<{width}}" + "".join(f"{c:>9}" for c in CLASS_NAMES) + f"{'total':>9}")
        for split, row in self.counts.items():
            lines.append(f"{SPLIT_LABELS.get(split, split):<{width}}"
                         + "".join(f"{row[c]:>9,}" for c in CLASS_NAMES) + f"{row['total']:>9,}")
        if self.class_weights:
            lines += ["", "class weights, Eq. (1) w_c = N / (C * N_c) on train:",
                      "  " + "  ".join(f"{c} {w:.3f}" for c, w in self.class_weights.items())]
        lines += [
            "",
            f"duplicates (identical pixels): {s['duplicate_groups']:,} groups covering {s['duplicate_files']:,} images",
            f"  train/test leakage:          {s['leakage_groups']:,} groups "
            f"({s['leaked_test_images']:,} test images also in train)",
            f"  PublicTest/PrivateTest:      {s['val_test_groups']:,} groups",
            f"  conflicting labels:          {s['conflict_groups']:,} groups",
            f"near-blank (pixel std < {self.blank_std:g}):   {s['near_blank']:,} images",
        ]
        if self.ferplus is not None:
            lines += _format_ferplus(self.ferplus, width)
        if examples > 0:
            for title, groups in (("leakage", self.leakage), ("conflicting labels", self.conflicts)):
                if groups:
                    lines.append(f"examples of {title}:")
                    lines += [f"  {_fmt_group(g)}" for g in groups[:examples]]
            if self.near_blank:
                lines.append("near-blank images:")
                lines += [f"  {b.name} ({b.label}, std {b.std:.2f})" for b in self.near_blank[:examples]]
            if self.skipped:
                lines.append("skipped:")
                lines += [f"  {m}" for m in self.skipped[:examples]]
        return "\n".join(lines)


def _format_ferplus(fp: FerPlusCheck, width: int) -> list[str]:
    if fp.error:
        return ["", f"FER+ votes: not used ({fp.error})"]
    lines = ["", f"FER+ majority vote vs FER2013 label ({fp.source}):",
             f"{'split':<{width}}{'files':>9}{'no votes':>10}{'7-class majority':>18}{'agree':>9}{'agreement':>11}"]
    for split, a in fp.splits.items():
        pct = "-" if a["percent"] is None else f"{a['percent']:.1f}%"
        lines.append(f"{SPLIT_LABELS.get(split, split):<{width}}{a['files']:>9,}{a['no_votes']:>10,}"
                     f"{a['majority7']:>18,}{a['agree']:>9,}{pct:>11}")
    lines += ["  majority: the first of the tied maxima over FER+'s 10 categories, in its column order;",
              "  faces whose majority is contempt, unknown or not-a-face have no 7-class majority"]
    if fp.unmatched:
        lines.append(f"  {fp.unmatched:,} faces are not listed in the votes file (counted as no votes)")
    return lines


def _fmt_group(g: DuplicateGroup, show: int = 4) -> str:
    items = [f"{n} [{lab}]" for n, lab in zip(g.names, g.labels)]
    more = f" (+{len(items) - show} more)" if len(items) > show else ""
    return ", ".join(items[:show]) + more


def check_dataset(data: FerData | str | os.PathLike[str], *, skip_bad: bool = False,
                  blank_std: float = BLANK_STD, cache: bool = True,
                  ferplus: str | os.PathLike[str] | bool | None = None) -> CheckReport:
    """Count, weigh and audit a FER2013 copy (a path, or data already loaded).

    ``ferplus``: a FER+ votes folder or file (errors in it raise), ``None`` to use a
    ``ferplus/`` folder beside the data when there is one, ``False`` to leave FER+ out.
    """
    if not isinstance(data, FerData):
        data = load_fer2013(data, skip_bad=skip_bad, cache=cache)
    labels = np.asarray(data.labels)
    usage = np.asarray(data.usage)

    counts: dict[str, dict[str, int]] = {}
    for split, usages in SPLITS.items():
        c = np.bincount(labels[np.isin(usage, usages)], minlength=NUM_CLASSES)
        counts[split] = {name: int(n) for name, n in zip(CLASS_NAMES, c)} | {"total": int(c.sum())}
    c = np.bincount(labels, minlength=NUM_CLASSES)
    counts["all"] = {name: int(n) for name, n in zip(CLASS_NAMES, c)} | {"total": int(c.sum())}

    train = labels[usage == 0]
    weights: dict[str, float] = {}
    if len(train) and (np.bincount(train, minlength=NUM_CLASSES) > 0).all():
        weights = {name: round(float(w), 4) for name, w in zip(CLASS_NAMES, class_weights(train))}

    def group(idx: list[int]) -> DuplicateGroup:
        return DuplicateGroup([data.names[i] for i in idx], [CLASS_NAMES[labels[i]] for i in idx],
                              [USAGES[usage[i]] for i in idx])

    duplicates = [group(idx) for idx in _identical_groups(data.images)]
    stds = _pixel_std(data.images)
    blank = [BlankImage(data.names[i], CLASS_NAMES[labels[i]], USAGES[usage[i]], round(float(stds[i]), 3))
             for i in np.flatnonzero(stds < blank_std)]
    return CheckReport(data.source, len(labels), counts, weights, duplicates, blank,
                       list(data.skipped), blank_std, _check_ferplus(data, ferplus))


def _check_ferplus(data: FerData, ferplus: str | os.PathLike[str] | bool | None) -> FerPlusCheck | None:
    if ferplus is False:
        return None
    if ferplus is None or ferplus is True:
        try:  # the default place: absent is normal (FER+ is a separate download)
            path = locate_ferplus(data.source or None, None, want=votes_file_for(data.names))
        except FerlabError:
            return None
        try:
            votes = load_ferplus(data, path)
        except FerlabError as exc:
            return FerPlusCheck(str(path), error=str(exc))
    else:
        votes = load_ferplus(data, ferplus)
    return FerPlusCheck(votes.source, agreement_by_split(data, votes), len(votes.unmatched))


def _identical_groups(images: np.ndarray) -> list[list[int]]:
    """Indices of images whose uint8 pixels are identical, groups of two or more, in file order."""
    by_hash: dict[bytes, list[int]] = {}
    for i in range(len(images)):
        key = hashlib.blake2b(np.ascontiguousarray(images[i]).tobytes(), digest_size=16).digest()
        by_hash.setdefault(key, []).append(i)
    return [idx for idx in by_hash.values() if len(idx) > 1]


def _pixel_std(images: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per-image pixel std, in chunks: the whole set in float64 would take 660 MB."""
    out = np.empty(len(images), dtype=np.float64)
    for s in range(0, len(images), chunk):
        block = np.asarray(images[s:s + chunk], dtype=np.float32).reshape(-1, images.shape[1] * images.shape[2])
        out[s:s + chunk] = block.std(axis=1)
    return out
