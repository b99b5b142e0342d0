"""FER+ crowd votes (ten per face) aligned with a loaded FER2013, in ferlab's class order.

FER2013's single label per face is noisy: FER+ (Barsoum et al., 2016) had ten annotators vote
on every image, over neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
unknown and NF (not a face). The votes let ferlab measure how often FER2013's label is the crowd's
answer (``ferlab data check``), and give soft targets or a cleaner label to train and evaluate on.

Both FER2013 formats are aligned without touching pixels:

- the Kaggle folder layout: ``FerData.names`` are paths relative to the FER2013 folder
  (``test/angry/PrivateTest_10131363.jpg``), joined to the ``kaggle_file`` column of
  ``votes_by_kaggle_file.csv`` (the Kaggle file ids are unrelated to the CSV row order, so that
  join was made once by matching pixels; see the FER+ folder's README);
- the original ``fer2013.csv``: names are ``row<i>``, the row number in that file, and
  Microsoft's ``fer2013new.csv`` lists the votes in the same row order.

Faces without FER+ votes are marked in :attr:`FerPlusVotes.has_votes`, never left as zeros that
look like real counts. In the folder layout there are 175: the 173 images FER+ dropped as
non-faces (``fer2013new.csv`` gives them no ``Image name``, only NF=10) and 2 files that match no
FER+ image. In the CSV layout only those 173 rows have none, because there every row simply
takes the votes of its own row.

Majority vote, as measured for the FER+ README (63.4 % agreement with FER2013's labels):
the first of the tied maxima over all ten categories *in FER+'s column order* (neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF). That is one of
the seven FER2013 classes exactly when an emotion has at least as many votes as each of
contempt, unknown and NF; otherwise, or without votes, there is no 7-class majority (-1).
Breaking ties in ferlab's alphabetical class order instead would give 64.2 %, a different number.
"""
from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...constants import CLASS_NAMES
from ...errors import FerlabError
from .dataset import SPLITS, USAGES, FerData, FerSplit

# FER+'s vote columns, in the order of its files (this order breaks ties in majority()).
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")
# FER+ emotion -> FER2013 class name (ferlab.constants.CLASS_NAMES).
FERPLUS_TO_CLASS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                    "neutral": "neutral", "sadness": "sad", "surprise": "surprise"}
KAGGLE_VOTES = "votes_by_kaggle_file.csv"  # for the folder layout
CSV_VOTES = "fer2013new.csv"  # for fer2013.csv
FOLDER = "ferplus"

# CLASS_NAMES index of each of FER+'s first seven columns, and the inverse permutation.
_COL_TO_CLASS = np.array([CLASS_NAMES.index(FERPLUS_TO_CLASS[c]) for c in VOTE_COLUMNS[:7]])
_CLASS_TO_COL = np.array([VOTE_COLUMNS.index(k) for c in CLASS_NAMES
                          for k, v in FERPLUS_TO_CLASS.items() if v == c])
_ROW_NAME = re.compile(r"row(\d+)")


@dataclass
class FerPlusVotes:
    """FER+ vote counts for a list of FER2013 faces, row ``i`` belonging to ``names[i]``.

    ``votes7`` holds the seven emotions in ``CLASS_NAMES`` order; the three categories that are
    no FER2013 class are kept apart so that nobody sums them into a class by accident. Rows with
    ``has_votes`` False are all zeros and mean "FER+ has no image for this face", not
    "nobody voted"; :meth:`majority` gives -1 and :meth:`distribution` NaN for them.
    """

    names: list[str]
    votes7: np.ndarray  # (N, 7) int64, CLASS_NAMES order
    contempt: np.ndarray  # (N,) int64
    unknown: np.ndarray  # (N,) int64
    not_face: np.ndarray  # (N,) int64, FER+'s "NF"
    has_votes: np.ndarray  # (N,) bool
    source: str = ""
    usage: np.ndarray | None = None  # (N,) int8 index into USAGES, as the votes file records it
    unmatched: list[str] = field(default_factory=list)  # names the votes file does not list at all

    def __len__(self) -> int:
        return len(self.names)

    def counts10(self) -> np.ndarray:
        """(N, 10) counts in FER+'s own column order (:data:`VOTE_COLUMNS`)."""
        out = np.empty((len(self), len(VOTE_COLUMNS)), dtype=np.int64)
        out[:, :7] = self.votes7[:, _COL_TO_CLASS]
        out[:, 7], out[:, 8], out[:, 9] = self.contempt, self.unknown, self.not_face
        return out

    def majority(self) -> np.ndarray:
        """(N,) class index (CLASS_NAMES) of the FER+ majority vote, -1 where there is none.

        The winner is the first of the tied maxima over all ten categories in FER+'s column
        order, so an emotion tied with contempt/unknown/NF wins, and emotions tied with each
        other resolve as neutral, happiness, surprise, sadness, anger, disgust, fear. -1 when
        the face has no votes or contempt, unknown or NF has strictly more votes than every
        emotion. This is the definition behind the FER+ README's 63.4 % agreement.
        """
        c10 = self.counts10()
        top = c10.argmax(axis=1)
        out = np.full(len(self), -1, dtype=np.int64)
        emo = (top < 7) & self.has_votes & (c10.sum(axis=1) > 0)
        out[emo] = _COL_TO_CLASS[top[emo]]
        return out

    @property
    def has_votes7(self) -> np.ndarray:
        """(N,) bool: at least one vote for one of the seven classes (a distribution exists)."""
        return self.has_votes & (self.votes7.sum(axis=1) > 0)

    def distribution(self) -> np.ndarray:
        """(N, 7) float64 vote shares over the seven classes (contempt, unknown and NF left out).

        Rows without any 7-class vote (no FER+ image, or only contempt/unknown/NF votes) are
        NaN, so that using them as a target fails loudly; select rows with :attr:`has_votes7`.
        """
        v = self.votes7.astype(np.float64)
        total = v.sum(axis=1, keepdims=True)
        out = np.full_like(v, np.nan)
        ok = self.has_votes7
        out[ok] = v[ok] / total[ok]
        return out

    def select(self, names: Sequence[str]) -> FerPlusVotes:
        """The rows of ``names`` in that order (e.g. a :class:`FerSplit` or a subset of it)."""
        pos = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in pos]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise FerlabError(f"FER+ votes loaded from {self.source or 'memory'} do not cover "
                              f"{missing[0]!r}{more}; load them for the same FER2013 copy")
        return self.take(np.fromiter((pos[n] for n in names), dtype=np.int64, count=len(names)))

    def take(self, idx: np.ndarray) -> FerPlusVotes:
        idx = np.asarray(idx, dtype=np.int64)
        names = [self.names[i] for i in idx]
        gone = set(self.unmatched)
        return FerPlusVotes(names, self.votes7[idx], self.contempt[idx], self.unknown[idx],
                            self.not_face[idx], self.has_votes[idx], self.source,
                            None if self.usage is None else self.usage[idx],
                            [n for n in names if n in gone])

    def agreement(self, labels: np.ndarray) -> dict[str, float | int | None]:
        """How often FER2013's ``labels`` (same rows) equal the FER+ majority: counts and %.

        Only faces with a 7-class majority count (``majority7``); ``percent`` is None when
        there are none, rather than a made-up 0 %.
        """
        labels = np.asarray(labels)
        if len(labels) != len(self):
            raise FerlabError(f"{len(labels)} labels for {len(self)} FER+ rows")
        maj = self.majority()
        has7 = maj >= 0
        agree = int((maj[has7] == labels[has7]).sum())
        n7 = int(has7.sum())
        return {"files": len(self), "no_votes": int((~self.has_votes).sum()), "majority7": n7,
                "agree": agree, "percent": round(100.0 * agree / n7, 2) if n7 else None}


# ----------------------------------------------------------------------------- finding the file

def locate_ferplus(data_source: str | os.PathLike[str] | None = None,
                   ferplus: str | os.PathLike[str] | None = None, *, want: str = KAGGLE_VOTES) -> Path:
    """The votes file ``want``: from ``ferplus`` (that file, or a folder holding it) if given,
    else from a ``ferplus/`` folder beside the FER2013 data (``<fer2013 folder>/../ferplus``;
    for a file such as ``fer2013.csv``, also a ``ferplus/`` in the file's own folder).

    The FER+ votes are a separate download, so the default only looks where the usual layout
    (``fer2013/`` and ``ferplus/`` side by side) puts them and otherwise says exactly what to pass.
    """
    if ferplus is not None:
        p = Path(ferplus).expanduser()
        if p.is_dir():
            if (p / want).is_file():
                return p / want
            raise FerlabError(f"FER+ folder {p} has no {want} (needed for this FER2013 format); "
                              f"pass that file, or the folder that holds it")
        if p.is_file():
            return p
        raise FerlabError(f"FER+ votes not found: {p} does not exist")
    looked: list[Path] = []
    if data_source:
        src = Path(data_source).expanduser()
        if src.is_dir():
            looked.append(src.parent / FOLDER / want)
        else:
            looked += [src.parent / FOLDER / want, src.parent.parent / FOLDER / want]
        for cand in looked:
            if cand.is_file():
                return cand
    where = f" (looked for {', '.join(map(str, looked))})" if looked else ""
    raise FerlabError(f"no FER+ votes found{where}: pass the FER+ folder or its {want} "
                      f"(ferplus=PATH, or --ferplus PATH on the command line)")


def votes_file_for(names: Sequence[str]) -> str:
    """Which votes file a list of names needs: ``row<i>`` names come from fer2013.csv."""
    return CSV_VOTES if names and all(_ROW_NAME.fullmatch(n) for n in names) else KAGGLE_VOTES


# ----------------------------------------------------------------------------- loading

def load_ferplus(data: FerData, ferplus: str | os.PathLike[str] | None = None) -> FerPlusVotes:
    """FER+ votes for every face of ``data``, in the order of ``data.names``.

    Also checks that the votes file's usage (Training/PublicTest/PrivateTest) agrees with the
    data's for every face it lists: a mismatch means a votes file for some other copy or a
    reordered ``fer2013.csv``, where the votes would silently belong to other faces.
    """
    path = locate_ferplus(data.source or None, ferplus, want=votes_file_for(data.names))
    votes = votes_for_names(data.names, path)
    if votes.usage is not None:
        listed = votes.usage >= 0
        bad = np.flatnonzero(listed & (votes.usage != np.asarray(data.usage)))
        if len(bad):
            i = bad[0]
            raise FerlabError(f"{path} does not belong to {data.source or 'this data'}: {len(bad):,} faces "
                              f"have another usage there, e.g. {data.names[i]} is {USAGES[data.usage[i]]} "
                              f"but {USAGES[votes.usage[i]]} in the votes file")
    return votes


def split_votes(split: FerSplit, votes: FerPlusVotes | str | os.PathLike[str]) -> FerPlusVotes:
    """FER+ votes for the faces of ``split``, row for row (``split.names`` are the join key).

    ``votes`` is what :func:`load_ferplus` returned for the whole copy, or a votes file/folder
    to read (a split does not know where its data came from, so no default location).
    """
    if len(split) and not split.names:
        raise FerlabError(f"split {split.name!r} has no file names, so its FER+ votes cannot be found")
    if isinstance(votes, FerPlusVotes):
        return votes.select(split.names)
    return votes_for_names(split.names, locate_ferplus(None, votes, want=votes_file_for(split.names)))


def votes_for_names(names: Sequence[str], path: str | os.PathLike[str]) -> FerPlusVotes:
    """Votes of ``path`` (either FER+ file; recognised by its header) for ``names`` in order.

    Names the file does not list are reported in ``unmatched`` and have ``has_votes`` False; if
    it lists none of them the file is for another copy (or the other FER2013 format) and this
    raises instead of returning an all-empty table.
    """
    path = Path(path)
    table = _read_votes(path)
    if table.kind == "csv":
        pos = [int(m.group(1)) if (m := _ROW_NAME.fullmatch(n)) and int(m.group(1)) < len(table.keys) else -1
               for n in names]
    else:
        index = {k: i for i, k in enumerate(table.keys)}
        pos = [index.get(_key(n), -1) for n in names]
    idx = np.asarray(pos, dtype=np.int64)
    found = idx >= 0
    if len(names) and not found.any():
        want, have = votes_file_for(names), CSV_VOTES if table.kind == "csv" else KAGGLE_VOTES
        hint = (f"names like {names[0]!r} need {want}, and this is a {have}" if want != have
                else f"it is for another FER2013 copy (first face: {names[0]!r})")
        raise FerlabError(f"{path} lists none of the {len(names):,} faces: {hint}")
    safe = np.where(found, idx, 0)
    c10 = np.where(found[:, None], table.counts[safe], 0)
    has = found & table.has_votes[safe]
    c10[~has] = 0
    usage = np.where(found, table.usage[safe], -1).astype(np.int8)
    return FerPlusVotes(list(names), c10[:, _CLASS_TO_COL].copy(), c10[:, 7].copy(), c10[:, 8].copy(),
                        c10[:, 9].copy(), has, str(path), usage,
                        [n for n, ok in zip(names, found) if not ok])


def _key(name: str) -> str:
    """Join key for folder-layout paths: '/' separators, case-insensitive (class folders are
    lower-cased by the loader; copies unpacked on Windows or macOS may differ in case)."""
    return name.replace("\\", "/").lower()


@dataclass(frozen=True)
class _Table:
    kind: str  # "csv" (fer2013new.csv, row order) or "kaggle" (votes_by_kaggle_file.csv)
    keys: list[str]  # join key per row: image name (csv) or _key(kaggle_file)
    counts: np.ndarray  # (R, 10) int64 in VOTE_COLUMNS order, zeros where no votes
    has_votes: np.ndarray  # (R,) bool
    usage: np.ndarray  # (R,) int8


def _read_votes(path: Path) -> _Table:
    """Parse a votes file once per content: 35,887 rows take ~0.3 s and a check or an experiment
    asks for several splits, while reading and hashing the 2 MB takes milliseconds (so an edited
    file is never served stale, whatever the file system's time stamps)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise FerlabError(f"cannot read FER+ votes {path}: {exc.strerror}") from None
    key = (str(path.resolve()), hashlib.blake2b(blob, digest_size=16).hexdigest())
    if key not in _PARSED:
        table = _parse_votes(path, blob)
        while len(_PARSED) >= 4:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = table
    return _PARSED[key]


_PARSED: dict[tuple[str, str], _Table] = {}


def _parse_votes(path: Path, blob: bytes) -> _Table:
    try:
        reader = csv.reader(io.StringIO(blob.decode("utf-8-sig"), newline=""))
        header = next(reader, None)
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise FerlabError(f"{path} is not a readable CSV file: {exc}") from None
    header = [h.strip() for h in header or []]
    if "kaggle_file" in header:
        kind, key_col, usage_col = "kaggle", "kaggle_file", "usage"
    elif "Image name" in header:
        kind, key_col, usage_col = "csv", "Image name", "Usage"
    else:
        raise FerlabError(f"{path} is not a FER+ votes file: expected a {KAGGLE_VOTES} (kaggle_file,...) "
                          f"or {CSV_VOTES} (Usage,Image name,...) header, found {header[:4]}")
    need = [key_col, usage_col, *VOTE_COLUMNS]
    missing = [c for c in need if c not in header]
    if missing:
        raise FerlabError(f"{path} lacks the column(s) {', '.join(missing)}")
    ki, ui = header.index(key_col), header.index(usage_col)
    vi = [header.index(c) for c in VOTE_COLUMNS]
    counts = np.zeros((len(rows), len(VOTE_COLUMNS)), dtype=np.int64)
    has = np.zeros(len(rows), dtype=bool)
    usage = np.full(len(rows), -1, dtype=np.int8)
    keys: list[str] = []
    for r, row in enumerate(rows):
        where = f"{path} line {r + 2}"
        if len(row) != len(header):
            raise FerlabError(f"{where}: {len(row)} fields, expected {len(header)} (truncated or corrupt file?)")
        if row[ui] not in USAGES:
            raise FerlabError(f"{where}: usage {row[ui]!r} is not one of {', '.join(USAGES)}")
        usage[r] = USAGES.index(row[ui])
        cells = [row[i].strip() for i in vi]
        name = row[ki].strip()
        keys.append(name if kind == "csv" else _key(name))
        if kind == "kaggle" and not name:
            raise FerlabError(f"{where}: empty kaggle_file")
        if kind == "kaggle" and all(c == "" for c in cells):
            continue  # no FER+ image for this file (status no_ferplus_image)
        try:
            vals = [int(c) for c in cells]
        except ValueError:
            raise FerlabError(f"{where}: vote counts must be integers, found {','.join(cells)}") from None
        if min(vals) < 0:
            raise FerlabError(f"{where}: negative vote count in {','.join(cells)}")
        counts[r] = vals
        # fer2013new.csv lists a row for every fer2013.csv face; an empty image name marks the
        # ones FER+ dropped (their NF=10 is the reason, not votes on an image that exists).
        has[r] = bool(name) if kind == "csv" else True
    counts[~has] = 0
    if not rows:
        raise FerlabError(f"{path} has no rows")
    return _Table(kind, keys, counts, has, usage)


# ----------------------------------------------------------------------------- agreement per split

def agreement_by_split(data: FerData, votes: FerPlusVotes, splits: Sequence[str] = ("train", "val", "test"),
                       ) -> dict[str, dict[str, float | int | None]]:
    """FER2013 label vs FER+ majority per split (and over ``all`` faces): see :meth:`FerPlusVotes.agreement`."""
    if len(votes) != len(data.labels):
        raise FerlabError(f"{len(votes)} FER+ rows for {len(data.labels)} faces: load them with load_ferplus(data)")
    labels, usage = np.asarray(data.labels), np.asarray(data.usage)
    out = {}
    for s in splits:
        idx = np.flatnonzero(np.isin(usage, SPLITS[s]))
        out[s] = votes.take(idx).agreement(labels[idx])
    out["all"] = votes.agreement(labels)
    return out


__all__ = ["CSV_VOTES", "FERPLUS_TO_CLASS", "KAGGLE_VOTES", "VOTE_COLUMNS", "FerPlusVotes",
           "agreement_by_split", "load_ferplus", "locate_ferplus", "split_votes", "votes_file_for", "votes_for_names"]
