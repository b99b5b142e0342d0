"""What a loaded FER2013 is, whichever file it came from: faces, labels, original usage, splits.

The readers (:mod:`ferlab.research.data.fer2013` for the CSV and the folder layout) build the same
:class:`FerData` from either, so the protocol (select on PublicTest, report PrivateTest) is
defined once, here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...constants import CLASS_NAMES, NUM_CLASSES
from ...errors import FerlabError

USAGES = ("Training", "PublicTest", "PrivateTest")
# Which usages make up each split name users can ask for.
SPLITS: dict[str, tuple[int, ...]] = {
    "train": (0,),
    "val": (1,),  # PublicTest: model selection and tuning only
    "test": (2,),  # PrivateTest: the number we report
    "test-all": (1, 2),  # all 7,178 test images, to compare with the thesis
}

@dataclass
class FerSplit:
    """Images and labels of one split; ``images`` is (N, 48, 48) uint8."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=NUM_CLASSES)

    def subset(self, n: int | None, seed: int = 0) -> FerSplit:
        """A stratified subset of ``n`` images (same class shares), deterministic in ``seed``."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        counts = self.counts()
        take = np.floor(counts / counts.sum() * n).astype(int)
        take[np.argsort(-(counts / counts.sum() * n - take))[: n - take.sum()]] += 1
        idx = np.concatenate([rng.permutation(np.flatnonzero(self.labels == c))[: take[c]]
                              for c in range(NUM_CLASSES)])
        idx.sort()
        return FerSplit(self.name, self.images[idx], self.labels[idx],
                        [self.names[i] for i in idx] if self.names else [])


@dataclass
class FerData:
    images: np.ndarray  # (N, 48, 48) uint8
    labels: np.ndarray  # (N,) int64, index into CLASS_NAMES
    usage: np.ndarray  # (N,) int8, index into USAGES
    names: list[str]  # file name (folder layout) or "row<i>" (CSV)
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    def split(self, name: str) -> FerSplit:
        if name not in SPLITS:
            raise FerlabError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        mask = np.isin(self.usage, SPLITS[name])
        if not mask.any():
            raise FerlabError(f"split {name!r} is empty in {self.source}")
        idx = np.flatnonzero(mask)
        return FerSplit(name, self.images[idx], self.labels[idx], [self.names[i] for i in idx])


def class_weights(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Eq. (1): w_c = N / (C * N_c), so every class contributes equally to the loss."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        missing = [CLASS_NAMES[i] for i in np.flatnonzero(counts == 0)]
        raise FerlabError(f"no training images for class(es) {', '.join(missing)}: class weights undefined")
    return counts.sum() / (num_classes * counts)
