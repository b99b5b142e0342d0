"""FER+ votes: the class mapping, the majority rule, alignment with both FER2013 formats,
bad votes files -- on small hand-written files, and on the real copy where present (the
FER+ README's agreement numbers)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from ferlab.constants import CLASS_NAMES
from ferlab.research.data import load_fer2013
from ferlab.research.data.dataset import FerData
from ferlab.research.data.fer2013 import CSV_ORDER
from ferlab.research.data.ferplus import (CSV_VOTES, KAGGLE_VOTES, VOTE_COLUMNS, FerPlusVotes, agreement_by_split,
                                 load_ferplus, locate_ferplus, split_votes, votes_for_names)
from ferlab.errors import FerlabError

HEADER_NEW = "Usage,Image name," + ",".join(VOTE_COLUMNS)
HEADER_KAGGLE = "kaggle_file,usage,ferplus_csv_row,status," + ",".join(VOTE_COLUMNS)


def _c(name: str) -> int:
    return CLASS_NAMES.index(name)


def _votes7(**kw: int) -> list[int]:
    """A 7-vector in CLASS_NAMES order from class-name keywords."""
    return [kw.get(c, 0) for c in CLASS_NAMES]


def _new_csv(path: Path, rows: list[tuple[str, str, list[int]]]) -> Path:
    """fer2013new.csv: (usage, image name, 10 counts in VOTE_COLUMNS order) per row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER_NEW] + [f"{u},{n}," + ",".join(map(str, v)) for u, n, v in rows]) + "\n")
    return path


def _fer_csv(path: Path, rows: list[tuple[str, str]], seed: int = 0) -> Path:
    """fer2013.csv in the original format and row order: (usage, class name) per row."""
    rng = np.random.default_rng(seed)
    lines = ["emotion,pixels,Usage"]
    for usage, cname in rows:
        px = " ".join(map(str, rng.integers(0, 256, 48 * 48)))
        lines.append(f"{CSV_ORDER.index(cname)},{px},{usage}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


#                  neutral happiness surprise sadness anger disgust fear contempt unknown NF
CSV_ROWS = [
    ("Training", "fer0000000.png", [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]),  # real row 0: neutral
    ("Training", "fer0000001.png", [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]),  # real row 1: neutral
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # FER+ dropped it: no votes
    ("PublicTest", "fer0000003.png", [0, 0, 0, 0, 4, 0, 0, 0, 4, 2]),  # anger ties unknown: anger
    ("PublicTest", "fer0000004.png", [0, 3, 0, 0, 0, 0, 0, 0, 5, 2]),  # unknown wins: -1
    ("PrivateTest", "fer0000005.png", [3, 0, 0, 0, 3, 0, 0, 4, 0, 0]),  # contempt wins: -1
    ("PrivateTest", "fer0000006.png", [0, 0, 5, 5, 0, 0, 0, 0, 0, 0]),  # surprise = sadness: surprise
    ("PrivateTest", "fer0000007.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # named, votes only NF
]
CSV_LABELS = ["neutral", "sad", "angry", "angry", "happy", "happy", "surprise", "fear"]


@pytest.fixture
def csv_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A small fer2013.csv with fer2013new.csv in the shared layout (fer2013/ beside ferplus/)."""
    fer = _fer_csv(tmp_path / "fer2013" / "fer2013.csv", [(u, c) for (u, _, _), c in zip(CSV_ROWS, CSV_LABELS)])
    new = _new_csv(tmp_path / "ferplus" / CSV_VOTES, CSV_ROWS)
    return fer, new


# ----------------------------------------------------------------------------- mapping and rules

def test_csv_format_votes_map_onto_class_names(csv_copy: tuple[Path, Path]) -> None:
    fer, new = csv_copy
    data = load_fer2013(fer, cache=False)
    v = load_ferplus(data)  # found in ../ferplus beside the fer2013 folder
    assert v.source == str(new.resolve()) and v.names == [f"row{i}" for i in range(len(CSV_ROWS))]
    assert v.votes7[0].tolist() == _votes7(neutral=4, sad=1, angry=3, disgust=2)
    assert v.votes7[1].tolist() == _votes7(neutral=6, surprise=1, sad=1) and v.unknown[1] == 2
    assert (v.contempt[5], v.not_face[3], v.unknown[4]) == (4, 2, 5)
    assert v.counts10()[6].tolist() == CSV_ROWS[6][2]  # round trip to FER+'s own order
    assert v.votes7.dtype == np.int64 and v.votes7.shape == (len(CSV_ROWS), 7)


def test_majority_breaks_ties_in_ferplus_column_order(csv_copy: tuple[Path, Path]) -> None:
    v = load_ferplus(load_fer2013(csv_copy[0], cache=False))
    assert v.majority().tolist() == [_c("neutral"), _c("neutral"), -1, _c("angry"), -1, -1, _c("surprise"), -1]
    # Ferlab's own class order would pick sad over surprise and angry over neutral; FER+'s does not.
    tie = FerPlusVotes(["a"], np.array([_votes7(angry=4, neutral=4)]), np.zeros(1, int), np.zeros(1, int),
                       np.zeros(1, int), np.ones(1, bool))
    assert tie.majority().tolist() == [_c("neutral")]


def test_no_votes_are_marked_not_zero_counts(csv_copy: tuple[Path, Path]) -> None:
    v = load_ferplus(load_fer2013(csv_copy[0], cache=False))
    assert v.has_votes.tolist() == [True, True, False, True, True, True, True, True]
    assert v.counts10()[2].sum() == 0  # the published NF=10 of a dropped row is not a vote on a face
    assert v.has_votes7.tolist() == [True, True, False, True, True, True, True, False]
    d = v.distribution()
    assert np.isnan(d[[2, 7]]).all() and not np.isnan(d[v.has_votes7]).any()
    assert np.allclose(d[v.has_votes7].sum(axis=1), 1.0)
    assert d[0].tolist() == pytest.approx([0.3, 0.2, 0, 0, 0.4, 0.1, 0])


def test_agreement_counts_only_7class_majorities(csv_copy: tuple[Path, Path]) -> None:
    data = load_fer2013(csv_copy[0], cache=False)
    a = agreement_by_split(data, load_ferplus(data))
    assert a["train"] == {"files": 3, "no_votes": 1, "majority7": 2, "agree": 1, "percent": 50.0}
    assert a["val"] == {"files": 2, "no_votes": 0, "majority7": 1, "agree": 1, "percent": 100.0}
    assert a["test"] == {"files": 3, "no_votes": 0, "majority7": 1, "agree": 1, "percent": 100.0}
    assert a["all"]["majority7"] == 4 and a["all"]["agree"] == 3
    none = FerPlusVotes(["x"], np.zeros((1, 7), int), np.zeros(1, int), np.zeros(1, int), np.zeros(1, int),
                        np.zeros(1, bool))
    assert none.agreement(np.array([0]))["percent"] is None


def test_csv_rows_keep_their_number_when_bad_rows_are_skipped(csv_copy: tuple[Path, Path]) -> None:
    fer, _ = csv_copy
    lines = fer.read_text().splitlines()
    lines[2] = "0,1 2 3,Training"  # row1: too few pixels
    fer.write_text("\n".join(lines) + "\n")
    data = load_fer2013(fer, cache=False, skip_bad=True)
    v = load_ferplus(data)
    assert v.names[:2] == ["row0", "row2"] and not v.has_votes[1]
    assert v.votes7[2].tolist() == _votes7(angry=4)


def test_split_votes_follow_split_names(csv_copy: tuple[Path, Path]) -> None:
    data = load_fer2013(csv_copy[0], cache=False)
    v = load_ferplus(data)
    test = data.split("test")
    sv = split_votes(test, v)
    assert sv.names == test.names == ["row5", "row6", "row7"]
    assert sv.majority().tolist() == [-1, _c("surprise"), -1]
    from_file = split_votes(test, csv_copy[1].parent)  # a folder: the right file is picked by the names
    assert from_file.names == sv.names and (from_file.counts10() == sv.counts10()).all()


# ----------------------------------------------------------------------------- bad input

def test_missing_votes_say_what_to_pass(tmp_path: Path) -> None:
    fer = _fer_csv(tmp_path / "fer2013" / "fer2013.csv", [("Training", "happy")])
    data = load_fer2013(fer, cache=False)
    with pytest.raises(FerlabError, match=r"no FER\+ votes found .*ferplus.*fer2013new\.csv.*--ferplus PATH"):
        load_ferplus(data)
    with pytest.raises(FerlabError, match="does not exist"):
        load_ferplus(data, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerlabError, match=r"has no fer2013new\.csv"):
        load_ferplus(data, tmp_path / "empty")
    with pytest.raises(FerlabError, match="pass the FER"):
        locate_ferplus(None, None)


@pytest.mark.parametrize("content, match", [
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 50, "not a readable CSV|not a FER"),
    (b"a,b,c\n1,2,3\n", "not a FER. votes file"),
    (b"Usage,Image name,neutral\nTraining,x.png,1\n", "lacks the column"),
    ((HEADER_NEW + "\nTraining,x.png,1,2,3\n").encode(), "line 2: 5 fields.*truncated"),
    ((HEADER_NEW + "\nTraining,x.png,1,2,3,4,5,6,7,8,nine,0\n").encode(), "line 2: vote counts must be integers"),
    ((HEADER_NEW + "\nTraining,x.png,1,2,3,4,5,6,7,8,-1,0\n").encode(), "line 2: negative"),
    ((HEADER_NEW + "\nTrainingg,x.png,1,2,3,4,5,6,7,8,0,0\n").encode(), "line 2: usage 'Trainingg'"),
    ((HEADER_NEW + "\n").encode(), "has no rows"),
    (b"", "not a FER. votes file"),
])
def test_corrupt_votes_files_are_one_clear_error(tmp_path: Path, content: bytes, match: str) -> None:
    bad = tmp_path / "votes.csv"
    bad.write_bytes(content)
    with pytest.raises(FerlabError, match=match):
        votes_for_names(["row0"], bad)


def test_votes_for_another_format_or_copy_are_refused(csv_copy: tuple[Path, Path], tmp_path: Path) -> None:
    fer, new = csv_copy
    data = load_fer2013(fer, cache=False)
    kaggle = tmp_path / "k" / KAGGLE_VOTES
    kaggle.parent.mkdir()
    kaggle.write_text(HEADER_KAGGLE + "\ntrain/happy/Training_1.jpg,Training,0,unique,0,10,0,0,0,0,0,0,0,0\n")
    with pytest.raises(FerlabError, match=r"lists none of the 8 faces.*need fer2013new\.csv"):
        load_ferplus(data, kaggle)
    with pytest.raises(FerlabError, match=r"need votes_by_kaggle_file\.csv"):
        votes_for_names(["train/happy/Training_1.jpg"], new)
    # Same length, other usages: a reordered fer2013.csv or the votes of another copy.
    swapped = [CSV_ROWS[5], *CSV_ROWS[1:5], CSV_ROWS[0], *CSV_ROWS[6:]]
    _new_csv(new, swapped)
    with pytest.raises(FerlabError, match=r"does not belong to .*row0 is Training but PrivateTest"):
        load_ferplus(data)


def test_split_without_names_is_refused(csv_copy: tuple[Path, Path]) -> None:
    from ferlab.research.data import FerSplit

    split = FerSplit("test", np.zeros((1, 48, 48), np.uint8), np.zeros(1, np.int64))
    with pytest.raises(FerlabError, match="no file names"):
        split_votes(split, csv_copy[1])


# ----------------------------------------------------------------------------- the real data

def _real_rows(ferplus_dir: Path, n: int = 2) -> list[dict[str, str]]:
    with open(ferplus_dir / KAGGLE_VOTES, newline="") as fh:
        return [row for _, row in zip(range(n), csv.DictReader(fh))]


@pytest.fixture(scope="module")
def real_votes(fer_data: FerData, ferplus_dir: Path) -> FerPlusVotes:
    return load_ferplus(fer_data)  # found beside the fer2013 folder, no path given


def test_real_votes_are_found_and_aligned_by_path(fer_data: FerData, real_votes: FerPlusVotes,
                                                  ferplus_dir: Path) -> None:
    # both sides resolved: the shared data may be reached through a symlink
    assert Path(real_votes.source).resolve() == (ferplus_dir / KAGGLE_VOTES).resolve()
    assert real_votes.names == fer_data.names and not real_votes.unmatched
    assert fer_data.names[0] == "train/angry/Training_10118481.jpg"  # names are paths, not file names
    pos = {n: i for i, n in enumerate(fer_data.names)}
    # The first two rows of votes_by_kaggle_file.csv, checked by hand against the file.
    first, second = _real_rows(ferplus_dir)
    assert first["kaggle_file"] == "test/angry/PrivateTest_10131363.jpg"  # 2,1,2,0,4,0,0,0,1,0
    i = pos[first["kaggle_file"]]
    assert real_votes.votes7[i].tolist() == _votes7(neutral=2, happy=1, surprise=2, angry=4)
    assert (real_votes.contempt[i], real_votes.unknown[i], real_votes.not_face[i]) == (0, 1, 0)
    assert real_votes.majority()[i] == _c("angry") and fer_data.labels[i] == _c("angry")
    assert second["kaggle_file"] == "test/angry/PrivateTest_10304478.jpg"  # 1,0,0,0,9,0,0,0,0,0
    j = pos[second["kaggle_file"]]
    assert real_votes.votes7[j].tolist() == _votes7(neutral=1, angry=9)
    assert real_votes.distribution()[j].tolist() == pytest.approx(np.array(_votes7(neutral=1, angry=9)) / 10)


def test_real_175_files_have_no_ferplus_votes(fer_data: FerData, real_votes: FerPlusVotes, ferplus_dir: Path) -> None:
    with open(ferplus_dir / KAGGLE_VOTES, newline="") as fh:
        expect = {r["kaggle_file"] for r in csv.DictReader(fh) if r["status"] == "no_ferplus_image"}
    missing = {n for n, h in zip(real_votes.names, real_votes.has_votes) if not h}
    assert len(missing) == 175 and missing == expect
    rows = ~real_votes.has_votes
    assert real_votes.counts10()[rows].sum() == 0 and (real_votes.majority()[rows] == -1).all()
    assert np.isnan(real_votes.distribution()[rows]).all()
    totals = real_votes.counts10()[~rows].sum(axis=1)  # ten annotators each, save one face with nine
    assert dict(zip(*(t.tolist() for t in np.unique(totals, return_counts=True)))) == {9: 1, 10: 35711}


def test_real_agreement_matches_ferplus_readme(fer_data: FerData, real_votes: FerPlusVotes) -> None:
    """FER+ README: 63.4 % overall; Training 28,223 files 63.4 %, PublicTest 3,529 63.2 %,
    PrivateTest 3,518 63.4 % (files whose majority is one of the seven classes)."""
    a = agreement_by_split(fer_data, real_votes)
    got = {s: (a[s]["majority7"], round(a[s]["percent"], 1)) for s in a}
    assert got == {"train": (28223, 63.4), "val": (3529, 63.2), "test": (3518, 63.4), "all": (35270, 63.4)}
    assert (a["train"]["agree"], a["val"]["agree"], a["test"]["agree"]) == (17900, 2229, 2231)
    assert (a["train"]["no_votes"], a["val"]["no_votes"], a["test"]["no_votes"]) == (149, 10, 16)


def test_real_split_votes_equal_the_whole_copy_rows(fer_data: FerData, real_votes: FerPlusVotes,
                                                    ferplus_dir: Path) -> None:
    test = fer_data.split("test")
    sv = split_votes(test, real_votes)
    idx = np.flatnonzero(fer_data.usage == 2)
    assert sv.names == test.names and (sv.counts10() == real_votes.counts10()[idx]).all()
    sub = test.subset(500, seed=3)
    from_file = split_votes(sub, ferplus_dir)
    assert (from_file.counts10() == sv.select(sub.names).counts10()).all()
    assert (from_file.has_votes == sv.select(sub.names).has_votes).all()


def test_real_csv_format_votes_equal_the_kaggle_join(fer_data: FerData, real_votes: FerPlusVotes,
                                                     ferplus_dir: Path) -> None:
    """The fer2013.csv path (names row<i>, fer2013new.csv in row order) gives every Kaggle file
    the votes of the FER+ row the pixel join matched; only the 173 rows FER+ dropped lack votes."""
    by_row = votes_for_names([f"row{i}" for i in range(35887)], ferplus_dir / CSV_VOTES)
    assert int((~by_row.has_votes).sum()) == 173
    with open(ferplus_dir / KAGGLE_VOTES, newline="") as fh:
        pairs = [(r["kaggle_file"], int(r["ferplus_csv_row"])) for r in csv.DictReader(fh) if r["ferplus_csv_row"]]
    assert len(pairs) == 35887 - 175
    pos = {n: i for i, n in enumerate(fer_data.names)}
    kag = np.array([pos[k] for k, _ in pairs])
    rows = np.array([r for _, r in pairs])
    assert (real_votes.counts10()[kag] == by_row.counts10()[rows]).all()
    assert (by_row.usage[rows] == fer_data.usage[kag]).all()
