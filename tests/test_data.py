"""FER2013 loading (folder layout and CSV), bad input, the cache, subsets, Eq. (1) and
``ferlab data check`` -- on small fake datasets, and on the real copy where present."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferlab.cli import main
from ferlab.constants import CLASS_NAMES, MEAN, STD
from ferlab.research.data import FerSplit, class_weights, load_fer2013
from ferlab.research.data import fer2013 as fermod
from ferlab.research.data.check import check_dataset
from ferlab.research.data.dataset import FerData
from ferlab.research.data.fer2013 import CSV_ORDER
from ferlab.errors import FerlabError

# Deliberately unequal so that stratification and class order mistakes show.
TRAIN_COUNTS = {"angry": 6, "disgust": 2, "fear": 5, "happy": 9, "neutral": 7, "sad": 6, "surprise": 4}
TEST_PER_CLASS = 2  # PublicTest and PrivateTest each
N_TRAIN = sum(TRAIN_COUNTS.values())
N_TEST = 2 * TEST_PER_CLASS * len(CLASS_NAMES)
USAGE_DIR = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}


def _records(seed: int = 0, scale: int = 1) -> list[tuple[str, str, str, np.ndarray]]:
    """(usage, class, file name, 48x48 uint8 image), every image different."""
    rng = np.random.default_rng(seed)
    recs = []
    for cname, n in TRAIN_COUNTS.items():
        for i in range(n * scale):
            recs.append(("Training", cname, f"Training_{cname}{i:04d}", rng.integers(0, 256, (48, 48), dtype=np.uint8)))
        for usage in ("PublicTest", "PrivateTest"):
            for i in range(TEST_PER_CLASS):
                recs.append((usage, cname, f"{usage}_{cname}{i:04d}", rng.integers(0, 256, (48, 48), dtype=np.uint8)))
    return recs


def make_folder(root: Path, recs: list[tuple[str, str, str, np.ndarray]], ext: str = ".png") -> Path:
    for usage, cname, stem, img in recs:
        d = root / USAGE_DIR[usage] / cname
        d.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(d / f"{stem}{ext}"), img)
    return root


def make_csv(path: Path, recs: list[tuple[str, str, str, np.ndarray]], seed: int = 1) -> Path:
    """The original format: emotion in CSV_ORDER (not alphabetical), pixels, Usage; rows shuffled."""
    order = np.random.default_rng(seed).permutation(len(recs))
    lines = ["emotion,pixels,Usage"]
    for i in order:
        usage, cname, _, img = recs[i]
        lines.append(f"{CSV_ORDER.index(cname)},{' '.join(map(str, img.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def fake(tmp_path: Path) -> tuple[Path, list]:
    recs = _records()
    return make_folder(tmp_path / "fer", recs), recs


def _canonical(d: FerData) -> list[tuple[int, int, bytes]]:
    """Order-free view: (usage, label, pixels) of every image."""
    return sorted((int(u), int(lab), np.asarray(img).tobytes()) for u, lab, img in zip(d.usage, d.labels, d.images))


def _load(path: Path, **kw) -> FerData:
    return load_fer2013(path, cache=False, **kw)


# ----------------------------------------------------------------------------- formats

def test_folder_and_csv_give_identical_data(fake: tuple[Path, list], tmp_path: Path) -> None:
    root, recs = fake
    csv_path = make_csv(tmp_path / "fer2013.csv", recs)
    a, b = _load(root), _load(csv_path)
    assert a.images.shape == b.images.shape == (N_TRAIN + N_TEST, 48, 48)
    assert a.images.dtype == b.images.dtype == np.uint8
    assert _canonical(a) == _canonical(b)
    expect = sorted((("Training", "PublicTest", "PrivateTest").index(u), CLASS_NAMES.index(c), img.tobytes())
                    for u, c, _, img in recs)
    assert _canonical(a) == expect
    for split in ("train", "val", "test", "test-all"):
        sa, sb = a.split(split), b.split(split)
        assert len(sa) == len(sb)
        assert (sa.counts() == sb.counts()).all()
        assert sorted(x.tobytes() for x in sa.images) == sorted(x.tobytes() for x in sb.images)
    # A folder holding only fer2013.csv is read as that CSV.
    assert _canonical(_load(tmp_path)) == _canonical(b)


def test_csv_emotion_order_maps_to_alphabetical_classes(tmp_path: Path) -> None:
    """CSV emotion 4 is sad and 6 is neutral, while CLASS_NAMES has neutral=4, sad=5."""
    lines = ["emotion,pixels,Usage"]
    for emo in range(7):
        lines.append(f"{emo},{' '.join([str(emo * 30)] * 2304)},Training")
    data = _load(make_csv_text(tmp_path, lines))
    got = {int(img[0, 0]) // 30: CLASS_NAMES[lab] for img, lab in zip(data.images, data.labels)}
    assert got == {0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral"}


def make_csv_text(tmp_path: Path, lines: list[str], name: str = "fer2013.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_splits_follow_usage(fake: tuple[Path, list]) -> None:
    data = _load(fake[0])
    train, val, test, both = (data.split(s) for s in ("train", "val", "test", "test-all"))
    assert (len(train), len(val), len(test), len(both)) == (N_TRAIN, N_TEST // 2, N_TEST // 2, N_TEST)
    assert list(train.counts()) == list(TRAIN_COUNTS.values())
    assert all("PublicTest_" in n for n in val.names) and all("PrivateTest_" in n for n in test.names)
    assert all(n.startswith("train/") for n in train.names)
    with pytest.raises(FerlabError, match="unknown split 'dev'"):
        data.split("dev")


def test_jpeg_folders_load_within_jpeg_noise(tmp_path: Path) -> None:
    """The shared copy is JPEG: decoding must give the stored pixels up to JPEG's rounding."""
    recs = [(u, c, n, cv2.GaussianBlur(img, (7, 7), 3)) for u, c, n, img in _records()]
    data = _load(make_folder(tmp_path / "jpg", recs, ".jpg"))
    by_name = {n: img for _, _, n, img in recs}
    for name, img in zip(data.names, data.images):
        ref = by_name[Path(name).stem]
        assert np.abs(img.astype(int) - ref.astype(int)).mean() < 3


def test_unnamed_test_files_are_split_in_half_deterministically(tmp_path: Path) -> None:
    recs = [(u, c, n.replace("PublicTest_", "img_").replace("PrivateTest_", "img2_"), i) for u, c, n, i in _records()]
    root = make_folder(tmp_path / "plain", recs)
    a, b = _load(root), _load(root)
    assert len(a.split("val")) == len(a.split("test")) == N_TEST // 2
    assert a.split("val").names == b.split("val").names


def test_hidden_and_os_files_are_ignored(fake: tuple[Path, list]) -> None:
    root, _ = fake
    (root / "train" / "angry" / "._Training_angry0000.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    (root / "train" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "train" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "happy" / "notes.txt").write_text("not an image")
    data = _load(root)
    assert len(data.labels) == N_TRAIN + N_TEST and not data.skipped


# ----------------------------------------------------------------------------- bad input

def _corrupt(root: Path) -> Path:
    p = root / "train" / "angry" / "Training_bad.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return p


def _empty(root: Path) -> Path:
    p = root / "train" / "fear" / "Training_empty.png"
    p.write_bytes(b"")
    return p


def _wrong_size(root: Path) -> Path:
    p = root / "test" / "sad" / "PublicTest_big.png"
    cv2.imwrite(str(p), np.zeros((64, 60), np.uint8))
    return p


def _unknown_class(root: Path) -> Path:
    d = root / "train" / "contempt"
    d.mkdir()
    cv2.imwrite(str(d / "Training_c.png"), np.zeros((48, 48), np.uint8))
    return d


@pytest.mark.parametrize("mutate,match", [
    (_corrupt, "unreadable or corrupt image"),
    (_empty, "unreadable or corrupt image"),
    (_wrong_size, "is 60x64, expected 48x48"),
    (_unknown_class, "unknown class folder"),
])
def test_bad_images_name_the_file_or_are_skipped(fake: tuple[Path, list], mutate, match: str) -> None:
    root, _ = fake
    bad = mutate(root)
    with pytest.raises(FerlabError, match=match) as exc:
        _load(root)
    assert str(bad) in str(exc.value) and "--skip-bad" in str(exc.value)
    data = _load(root, skip_bad=True)
    assert len(data.labels) == N_TRAIN + N_TEST
    assert len(data.skipped) == 1 and str(bad) in data.skipped[0]


@pytest.mark.parametrize("layout,match", [
    ("missing", "data path not found"),
    ("no_train", "has no train/ folder"),
    ("split_folder", "holds class folders directly"),
    ("loose_image", "lies directly in train/"),
])
def test_wrong_layouts_explain_the_expected_one(fake: tuple[Path, list], tmp_path: Path, layout: str,
                                                match: str) -> None:
    root, _ = fake
    if layout == "missing":
        path = tmp_path / "nowhere"
    elif layout == "no_train":
        path = tmp_path / "emptydir"
        path.mkdir()
    elif layout == "split_folder":
        path = root / "train"  # a common slip: pointing at the split instead of its parent
    else:
        cv2.imwrite(str(root / "train" / "stray.png"), np.zeros((48, 48), np.uint8))
        path = root
    with pytest.raises(FerlabError, match=match):
        load_fer2013(path, cache=False, skip_bad=True)


@pytest.mark.parametrize("row,match", [
    ("9,{px},Training", "emotion '9' is not an integer 0-6"),
    ("x,{px},Training", "emotion 'x'"),
    ("3,1 2 3,Training", "expected 2304 pixel values"),
    ("3,{bigpx},Training", "pixel values must lie in 0-255"),
    ("3,{px},Validation", "Usage 'Validation'"),
    ("3,{px} abc,Training", "pixels are not integers"),
])
def test_bad_csv_rows_name_the_line_or_are_skipped(tmp_path: Path, row: str, match: str) -> None:
    px = " ".join(["7"] * 2304)
    good = [f"{e},{px},Training" for e in range(7)]
    bad = row.format(px=px, bigpx=" ".join(["300"] * 2304))
    path = make_csv_text(tmp_path, ["emotion,pixels,Usage", *good[:3], bad, *good[3:]])
    with pytest.raises(FerlabError, match=match) as exc:
        _load(path)
    assert f"{path} line 5" in str(exc.value)
    data = _load(path, skip_bad=True)
    assert len(data.labels) == 7 and len(data.skipped) == 1 and "line 5" in data.skipped[0]


@pytest.mark.parametrize("content,match", [
    (b"label,image\n1,2 3\n", "not a FER2013 CSV"),
    (bytes(range(256)) * 40, "not a (FER2013|readable) CSV"),
    (b"", "not a FER2013 CSV"),
])
def test_files_that_are_not_fer_csv(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(FerlabError, match=match):
        _load(path, skip_bad=True)


# ----------------------------------------------------------------------------- cache

def test_cache_second_load_is_identical_and_does_not_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "fer", _records(scale=8))
    t = time.perf_counter()
    first = load_fer2013(root, cache_dir=tmp_path / "cache")
    t_first = time.perf_counter() - t
    assert list((tmp_path / "cache").glob("*/labels.npy"))

    def no_decode(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(fermod, "_read_folders", no_decode)
    t = time.perf_counter()
    second = load_fer2013(root, cache_dir=tmp_path / "cache")
    t_second = time.perf_counter() - t
    assert isinstance(second.images, np.memmap)  # memory-mapped, not decoded
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels) and second.labels.dtype == np.int64
    assert np.array_equal(first.usage, second.usage) and first.names == second.names
    assert t_second < t_first, (t_first, t_second)
    # Splits and subsets work on the memory map as on the decoded array.
    assert np.array_equal(first.split("val").subset(10).images, second.split("val").subset(10).images)


def test_cache_is_invalidated_when_files_change(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "fer", _records())
    n = len(load_fer2013(root, cache_dir=tmp_path / "c").labels)
    cv2.imwrite(str(root / "train" / "happy" / "Training_new.png"), np.full((48, 48), 9, np.uint8))
    again = load_fer2013(root, cache_dir=tmp_path / "c")
    assert len(again.labels) == n + 1 and "train/happy/Training_new.png" in again.names


def test_cache_remembers_skipped_files(fake: tuple[Path, list], tmp_path: Path) -> None:
    """A --skip-bad load must not let a later load without the flag pass silently."""
    root, _ = fake
    bad = _corrupt(root)
    cdir = tmp_path / "c"
    assert len(load_fer2013(root, skip_bad=True, cache_dir=cdir).skipped) == 1
    with pytest.raises(FerlabError, match="unreadable or corrupt") as exc:
        load_fer2013(root, cache_dir=cdir)
    assert str(bad) in str(exc.value)
    cached = load_fer2013(root, skip_bad=True, cache_dir=cdir)
    assert isinstance(cached.images, np.memmap) and len(cached.skipped) == 1


def test_no_cache_writes_nothing(fake: tuple[Path, list], tmp_path: Path) -> None:
    load_fer2013(fake[0], cache=False, cache_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


# ----------------------------------------------------------------------------- subsets, weights

def _split(counts: list[int]) -> FerSplit:
    labels = np.repeat(np.arange(7), counts)
    images = np.repeat(labels.astype(np.uint8), 48 * 48).reshape(-1, 48, 48)  # pixel value = label
    return FerSplit("train", images, labels, [f"img{i}" for i in range(len(labels))])


@pytest.mark.parametrize("n", [7, 100, 271, 999])
def test_subset_is_stratified_and_deterministic(n: int) -> None:
    split = _split([400, 50, 300, 700, 500, 450, 310])
    share = split.counts() / len(split)
    sub = split.subset(n, seed=3)
    assert len(sub) == n
    assert (np.abs(sub.counts() - share * n) < 1).all(), sub.counts()
    assert (sub.images[:, 0, 0] == sub.labels).all()  # images travel with their labels
    assert [int(s[3:]) for s in sub.names] == sorted(int(s[3:]) for s in sub.names)
    assert sub.names == split.subset(n, seed=3).names
    assert sub.names != split.subset(n, seed=4).names


def test_subset_larger_than_split_is_the_split() -> None:
    split = _split([3, 1, 2, 2, 2, 2, 2])
    assert split.subset(None) is split and split.subset(len(split)) is split and split.subset(10**6) is split


def test_class_weights_eq1() -> None:
    labels = np.repeat(np.arange(7), [10, 2, 10, 20, 10, 10, 8])
    w = class_weights(labels)
    np.testing.assert_allclose(w, 70 / (7 * np.array([10, 2, 10, 20, 10, 10, 8])))
    # Equal expected contribution per class: N_c * w_c is the same for every class.
    np.testing.assert_allclose(np.bincount(labels) * w, 10.0)
    with pytest.raises(FerlabError, match="disgust"):
        class_weights(labels[labels != 1])


# ----------------------------------------------------------------------------- data check

def _plant_problems(root: Path, recs: list) -> None:
    """One duplicate inside train, one train/test leak, one conflicting pair, one blank."""
    img = {n: i for _, _, n, i in recs}
    cv2.imwrite(str(root / "train/happy/Training_dup.png"), img["Training_happy0000"])
    cv2.imwrite(str(root / "test/fear/PublicTest_leak.png"), img["Training_fear0001"])
    cv2.imwrite(str(root / "train/sad/Training_conflict.png"), img["Training_angry0002"])
    blank = np.full((48, 48), 120, np.uint8)
    blank[::7, ::5] = 123  # std ~1.1: not a face
    cv2.imwrite(str(root / "train/neutral/Training_blank.png"), blank)


def test_check_finds_planted_problems(fake: tuple[Path, list]) -> None:
    root, recs = fake
    _plant_problems(root, recs)
    report = check_dataset(root, cache=False)
    assert report.summary() == {"images": N_TRAIN + N_TEST + 4, "skipped": 0, "duplicate_groups": 3,
                                "duplicate_files": 6, "leakage_groups": 1, "leaked_test_images": 1,
                                "val_test_groups": 0, "conflict_groups": 1, "near_blank": 1}
    assert report.leakage[0].names == ["train/fear/Training_fear0001.png", "test/fear/PublicTest_leak.png"]
    assert sorted(report.conflicts[0].labels) == ["angry", "sad"]
    assert report.near_blank[0].name == "train/neutral/Training_blank.png" and 0.5 < report.near_blank[0].std < 2
    assert report.counts["train"]["happy"] == TRAIN_COUNTS["happy"] + 1
    assert report.counts["test-all"]["total"] == N_TEST + 1
    n = N_TRAIN + 3
    assert report.class_weights["disgust"] == pytest.approx(n / (7 * 2), abs=1e-4)


def test_check_csv_and_folders_agree(fake: tuple[Path, list], tmp_path: Path) -> None:
    root, recs = fake
    planted = recs + [("Training", "happy", "dup", recs[5][3]), ("PrivateTest", "sad", "leak", recs[0][3])]
    make_folder(root, planted[-2:])
    a = check_dataset(root, cache=False)
    b = check_dataset(make_csv(tmp_path / "fer2013.csv", planted), cache=False)
    assert a.summary() == b.summary()
    assert a.counts == b.counts and a.class_weights == b.class_weights


def test_check_cli_text_and_json(fake: tuple[Path, list], capsys: pytest.CaptureFixture[str]) -> None:
    root, recs = fake
    _plant_problems(root, recs)
    _corrupt(root)
    assert main(["data", "check", str(root)]) == 2  # stops at the corrupt file without --skip-bad
    assert "Training_bad.jpg" in capsys.readouterr().err

    assert main(["data", "check", str(root), "--skip-bad", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["summary"]["skipped"] == 1 and rep["summary"]["leakage_groups"] == 1
    assert rep["counts"]["val"]["total"] == N_TEST // 2 + 1
    assert set(rep["class_weights"]) == set(CLASS_NAMES)
    assert any(g["leaks"] for g in rep["duplicates"])

    assert main(["data", "check", str(root), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    for text in ("1 bad files skipped", "duplicates (identical pixels): 3 groups covering 6 images",
                 "train/test leakage:", "conflicting labels:", "near-blank (pixel std < 2):",
                 "class weights, Eq. (1)", "Training_bad.jpg"):
        assert text in out, text


def test_cli_bad_path_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferlab data: error: data path not found") and "\n" not in err


# ----------------------------------------------------------------------------- the real data

def test_real_counts_match_thesis_table_1(fer_data: FerData) -> None:
    train, test = fer_data.split("train"), fer_data.split("test-all")
    assert dict(zip(CLASS_NAMES, train.counts().tolist())) == {
        "angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "neutral": 4965, "sad": 4830, "surprise": 3171}
    assert dict(zip(CLASS_NAMES, test.counts().tolist())) == {
        "angry": 958, "disgust": 111, "fear": 1024, "happy": 1774, "neutral": 1233, "sad": 1247, "surprise": 831}
    assert (len(train), len(test), len(fer_data.split("val")), len(fer_data.split("test"))) == (28709, 7178, 3589, 3589)
    # Per-class PublicTest / PrivateTest counts of the data README.
    assert fer_data.split("val").counts().tolist() == [467, 56, 496, 895, 607, 653, 415]
    assert fer_data.split("test").counts().tolist() == [491, 55, 528, 879, 626, 594, 416]
    assert fer_data.images.shape == (35887, 48, 48) and fer_data.images.dtype == np.uint8


def test_real_class_weights_eq1(fer_data: FerData) -> None:
    """Eq. (1) on the real training split. The text's disgust = 28709 / (7 * 436) ~ 9.40; Table 1's
    weight column (disgust 15.94, angry 1.74, ...) does not follow Eq. (1) and is not used."""
    w = dict(zip(CLASS_NAMES, class_weights(fer_data.split("train").labels)))
    assert w["disgust"] == pytest.approx(9.40, abs=0.01)
    expect = {"angry": 1.027, "fear": 1.001, "happy": 0.568, "neutral": 0.826, "sad": 0.849, "surprise": 1.293}
    for c, v in expect.items():
        assert w[c] == pytest.approx(v, abs=5e-4), c


def test_real_normalisation_constants(fer_data: FerData) -> None:
    """MEAN / STD (Table 6) are the training-set pixel statistics on the [0, 1] scale."""
    hist = np.bincount(np.asarray(fer_data.split("train").images).ravel(), minlength=256)
    v = np.arange(256) / 255.0
    mean = (hist * v).sum() / hist.sum()
    std = np.sqrt((hist * (v - mean) ** 2).sum() / hist.sum())
    assert mean == pytest.approx(MEAN, abs=1e-3)  # measured 0.5077
    assert std == pytest.approx(STD, abs=1e-3)  # measured 0.2551


def test_real_check_matches_data_readme(fer_data: FerData) -> None:
    """The README's numbers come from hashing the JPEG files; hashing the decoded pixels gives
    exactly the same: 1,516 groups / 3,369 files / 531 leaking / 57 conflicting / 13 blank."""
    s = check_dataset(fer_data).summary()
    assert (s["duplicate_groups"], s["duplicate_files"], s["leakage_groups"], s["conflict_groups"],
            s["near_blank"]) == (1516, 3369, 531, 57, 13)
    # Measured on the shared copy (not in the README): 568 test images have an identical training
    # image, and 43 groups are shared between PublicTest and PrivateTest.
    assert (s["leaked_test_images"], s["val_test_groups"]) == (568, 43)


# ----------------------------------------------------------------------------- data check: FER+ votes

def _kaggle_votes(path: Path, recs: list, wrong: int = 3, skip: int = 0) -> Path:
    """votes_by_kaggle_file.csv for the fake folder copy: every face's majority is its own label,
    except the first ``wrong`` of each usage (voted 'fear' by six, or 'surprise' for fear faces);
    the last ``skip`` files are left out and one Training file has no FER+ image."""
    from ferlab.research.data.ferplus import VOTE_COLUMNS

    col = {"angry": "anger", "happy": "happiness", "sad": "sadness"}
    lines = ["kaggle_file,usage,ferplus_csv_row,status," + ",".join(VOTE_COLUMNS)]
    seen: dict[str, int] = {}
    for k, (usage, cname, stem, _) in enumerate(recs[:len(recs) - skip]):
        name = f"{USAGE_DIR[usage]}/{cname}/{stem}.png"
        seen[usage] = seen.get(usage, 0) + 1
        if usage == "Training" and seen[usage] == wrong + 1:
            lines.append(f"{name},{usage},,no_ferplus_image" + "," * len(VOTE_COLUMNS))
            continue
        winner = ("surprise" if cname == "fear" else "fear") if seen[usage] <= wrong else cname
        votes = dict.fromkeys(VOTE_COLUMNS, 0) | {col.get(winner, winner): 6, "unknown": 4}
        lines.append(f"{name},{usage},{k},unique," + ",".join(str(votes[c]) for c in VOTE_COLUMNS))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_reports_ferplus_agreement_when_found(fake: tuple[Path, list], capsys: pytest.CaptureFixture[str]) -> None:
    root, recs = fake
    _kaggle_votes(root.parent / "ferplus" / "votes_by_kaggle_file.csv", recs)  # beside the data: found
    fp = check_dataset(root, cache=False).ferplus
    assert fp is not None and not fp.error and fp.unmatched == 0
    n_val = N_TEST // 2
    assert fp.splits["train"] == {"files": N_TRAIN, "no_votes": 1, "majority7": N_TRAIN - 1,
                                  "agree": N_TRAIN - 4, "percent": round(100 * (N_TRAIN - 4) / (N_TRAIN - 1), 2)}
    assert fp.splits["val"] == {"files": n_val, "no_votes": 0, "majority7": n_val, "agree": n_val - 3,
                                "percent": round(100 * (n_val - 3) / n_val, 2)}
    assert fp.splits["test"]["agree"] == n_val - 3 and fp.splits["all"]["files"] == N_TRAIN + N_TEST

    assert main(["data", "check", str(root), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "FER+ majority vote vs FER2013 label" in out
    assert f"{'val (PublicTest)':<25}{n_val:>9,}{0:>10,}{n_val:>18,}{n_val - 3:>9,}{'78.6%':>11}" in out
    assert main(["data", "check", str(root), "--no-cache", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ferplus"]["splits"]["val"]["agree"] == n_val - 3
    assert main(["data", "check", str(root), "--no-cache", "--no-ferplus"]) == 0
    assert "FER+" not in capsys.readouterr().out


def test_check_output_is_unchanged_without_ferplus(fake: tuple[Path, list], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = fake
    report = check_dataset(root, cache=False)
    assert report.ferplus is None and "ferplus" not in report.to_dict()
    assert "FER+" not in report.format_text()


def test_check_ferplus_option_and_bad_votes(fake: tuple[Path, list], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root, recs = fake
    votes = _kaggle_votes(tmp_path / "elsewhere" / "votes_by_kaggle_file.csv", recs, skip=2)
    assert main(["data", "check", str(root), "--no-cache", "--ferplus", str(votes.parent), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["ferplus"]
    assert rep["unmatched"] == 2 and rep["splits"]["test"]["no_votes"] == 2  # unlisted files count as no votes
    assert main(["data", "check", str(root), "--no-cache", "--ferplus", str(votes)]) == 0
    assert "2 faces are not listed in the votes file" in capsys.readouterr().out

    # Given explicitly, a bad votes file stops the check with one line...
    votes.write_text(votes.read_text().replace(",6,", ",six,", 1))
    assert main(["data", "check", str(root), "--no-cache", "--ferplus", str(votes)]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 2: vote counts must be integers" in err and "\n" not in err
    assert main(["data", "check", str(root), "--no-cache", "--ferplus", str(tmp_path / "none")]) == 2
    assert "FER+ votes not found" in capsys.readouterr().err
    # ...found beside the data, it is reported as unused and the rest of the check still runs.
    (tmp_path / "ferplus").mkdir()
    (tmp_path / "ferplus" / "votes_by_kaggle_file.csv").write_bytes(votes.read_bytes())
    assert main(["data", "check", str(root), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "FER+ votes: not used (" in out and "vote counts must be integers" in out and "near-blank" in out


def test_real_check_reports_ferplus_readme_agreement(fer_data: FerData, ferplus_dir: Path) -> None:
    """FER+ README: Training 28,223 files with a 7-class majority, 63.4 %; PublicTest 3,529, 63.2 %;
    PrivateTest 3,518, 63.4 %."""
    report = check_dataset(fer_data)
    fp = report.ferplus
    # both sides resolved: the shared data may be reached through a symlink
    assert fp is not None and Path(fp.source).resolve().parent == ferplus_dir.resolve()
    got = {s: (a["majority7"], round(a["percent"], 1)) for s, a in fp.splits.items()}
    assert got == {"train": (28223, 63.4), "val": (3529, 63.2), "test": (3518, 63.4), "all": (35270, 63.4)}
    assert fp.splits["all"]["no_votes"] == 175
    text = report.format_text(examples=0)
    assert "28,223" in text and "63.2%" in text


# ----------------------------------------------------------------------------- where the data is

def test_data_root_is_argument_then_environment_then_default(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One rule for every command: --data, else $FERLAB_DATA, else the config's data.root."""
    from ferlab.research.data import resolve_root

    monkeypatch.setenv("FERLAB_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg", default="cfg") == str(tmp_path / "arg")
    assert resolve_root(None, default="cfg") == str(tmp_path / "env")
    monkeypatch.delenv("FERLAB_DATA")
    assert resolve_root(None, default="cfg") == "cfg"
    with pytest.raises(FerlabError, match=r"^no data: pass --data PATH .* or set FERLAB_DATA$"):
        resolve_root(None)


def test_resolve_data_takes_loaded_data_or_a_path(fake: tuple[Path, list], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from ferlab.research.data import resolve_data

    root, _ = fake
    monkeypatch.setenv("FERLAB_CACHE", str(tmp_path / "cache"))
    data = _load(root)
    assert resolve_data(data) is data
    monkeypatch.setenv("FERLAB_DATA", str(root))
    assert _canonical(resolve_data(None)) == _canonical(data)


@pytest.mark.parametrize("argv", [["train", "epochs=1"], ["evaluate"], ["experiments", "run", "--only", "1"]])
def test_every_command_names_the_same_missing_data(argv: list[str], monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FERLAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("no data: pass --data PATH (FER2013 folder or fer2013.csv) or set FERLAB_DATA")
