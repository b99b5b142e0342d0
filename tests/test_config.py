"""Run configuration: defaults <- YAML (with ``base:``) <- API sections <- ``key=value``."""
from __future__ import annotations

from pathlib import Path

import pytest

from ferlab.config import DEFAULTS, make_config, parse_override
from ferlab.errors import FerlabError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_thesis_recipe() -> None:
    """Section 6.1-6.2 / Table 6: the defaults alone must reproduce the final model's recipe."""
    cfg = make_config()
    assert cfg["model"] | {} == {"name": "resnet18", "pretrained": "imagenet", "head": [256],
                                 "dropout": [0.5, 0.25], "in_chans": 1, "stem": "thesis"}
    t = cfg["train"]
    assert (t["epochs"], t["batch_size"], t["optimizer"], t["lr"], t["scheduler"]) == (50, 64, "adam", 2e-4, "cosine")
    assert (t["label_smoothing"], t["class_weights"], t["select_metric"]) == (0.1, True, "val_acc")
    assert cfg["augment"]["erasing_p"] == 0.3
    # make_config must never hand out the shared defaults themselves.
    cfg["model"]["head"].append(1)
    assert DEFAULTS["model"]["head"] == [256]


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.yaml",
                  "name: exp13\nmodel:\n  head: [256, 128]\ntrain:\n  epochs: 30\n  lr: 1.0e-4\n")
    cfg = make_config(path, ["train.epochs=3", "model.dropout=[0.3, 0.15]"])
    assert cfg["name"] == "exp13"
    assert cfg["model"]["head"] == [256, 128]
    assert cfg["train"]["lr"] == 1e-4
    assert cfg["train"]["epochs"] == 3  # the command line wins over the file
    assert cfg["model"]["dropout"] == [0.3, 0.15]
    assert cfg["train"]["batch_size"] == 64  # untouched keys keep the defaults
    assert cfg["model"]["name"] == "resnet18"


def test_dotted_keys_and_yaml_typed_values() -> None:
    cfg = make_config(overrides=["model.name=fernet", "train.amp=false", "data.train_subset=500",
                                 "data.root=", "augment.scale=[0.9, 1.1]", "train.betas=[0.8, 0.99]"])
    assert cfg["model"]["name"] == "fernet"
    assert cfg["train"]["amp"] is False
    assert cfg["data"]["train_subset"] == 500
    assert cfg["data"]["root"] is None
    assert cfg["augment"]["scale"] == [0.9, 1.1]
    assert cfg["train"]["betas"] == [0.8, 0.99]


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    """Plain PyYAML reads ``1e-4`` as the *string* '1e-4' (YAML 1.1); a learning rate given that
    way must still be a float, on the command line and in files."""
    cfg = make_config(overrides=["lr=3e-4", "weight_decay=5E-5", "eta_min=1e-6"])
    assert cfg["train"]["lr"] == pytest.approx(3e-4) and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["weight_decay"] == pytest.approx(5e-5)
    path = _write(tmp_path / "sci.yaml", "train:\n  lr: 1e-3\n")
    assert make_config(path)["train"]["lr"] == pytest.approx(1e-3)
    assert parse_override("name=run1e5")[1] == "run1e5"  # words stay words


def test_shortcut_keys() -> None:
    cfg = make_config(overrides=["epochs=1", "batch_size=32", "erasing_p=0.5", "seed=7"])
    assert cfg["train"]["epochs"] == 1
    assert cfg["train"]["batch_size"] == 32
    assert cfg["augment"]["erasing_p"] == 0.5
    assert cfg["seed"] == 7  # a top-level key is not redirected
    assert "epochs" not in cfg


@pytest.mark.parametrize("override,match", [
    ("train.epoch=3", "unknown config key 'train.epoch'"),
    ("epoch=3", "unknown config key 'epoch'"),
    ("model.head.width=3", "unknown config key 'model.head.width'"),
    ("nosuch.key=1", "unknown config key 'nosuch.key'"),
    ("epochs", "not of the form key=value"),
])
def test_bad_overrides_are_user_errors(override: str, match: str) -> None:
    with pytest.raises(FerlabError, match=match):
        make_config(overrides=[override])


def test_unknown_keys_in_file_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "typo.yaml", "train:\n  epohcs: 3\n")
    with pytest.raises(FerlabError, match=r"unknown config key 'train.epohcs' in .*typo.yaml"):
        make_config(path)
    with pytest.raises(FerlabError, match="unknown config key 'modle'"):
        make_config(modle={"name": "x"})


def test_base_inheritance(tmp_path: Path) -> None:
    """Each experiment is a small YAML delta on a parent (``base:`` is relative to the file)."""
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "parent.yaml", "name: parent\ntrain:\n  epochs: 40\n  lr: 1.0e-3\nmodel:\n  head: [512]\n")
    _write(tmp_path / "sub" / "child.yaml", "base: ../parent.yaml\nname: child\ntrain:\n  epochs: 5\n")
    grand = _write(tmp_path / "sub" / "grandchild.yaml", "base: child.yaml\nmodel:\n  dropout: [0.6, 0.3]\n")
    cfg = make_config(grand, ["train.lr=0.01"])
    assert cfg["name"] == "child"
    assert cfg["train"]["epochs"] == 5  # child over parent
    assert cfg["train"]["lr"] == 0.01  # command line over everything
    assert cfg["model"]["head"] == [512]  # from the grandparent
    assert cfg["model"]["dropout"] == [0.6, 0.3]
    assert cfg["train"]["batch_size"] == 64  # defaults below all
    assert "base" not in cfg


def test_base_errors(tmp_path: Path) -> None:
    missing = _write(tmp_path / "a.yaml", "base: nowhere.yaml\n")
    with pytest.raises(FerlabError, match="config file not found: .*nowhere.yaml"):
        make_config(missing)
    _write(tmp_path / "x.yaml", "base: y.yaml\n")
    loop = _write(tmp_path / "y.yaml", "base: x.yaml\n")
    with pytest.raises(FerlabError, match="loop"):
        make_config(loop)


@pytest.mark.parametrize("text,match", [("train: [1, 2\n", "not valid YAML"), ("- 1\n- 2\n", "mapping")])
def test_malformed_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(FerlabError, match=match):
        make_config(_write(tmp_path / "bad.yaml", text))
    with pytest.raises(FerlabError, match="config file not found"):
        make_config(tmp_path / "absent.yaml")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert make_config(_write(tmp_path / "empty.yaml", "")) == make_config()


def test_api_sections_between_file_and_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.yaml", "train:\n  epochs: 10\n  batch_size: 16\n")
    cfg = make_config(path, ["epochs=2"], train={"epochs": 7, "batch_size": 8})
    assert cfg["train"]["batch_size"] == 8  # section over file
    assert cfg["train"]["epochs"] == 2  # override over section


def test_model_options_pass_through_to_the_factory() -> None:
    """Each architecture has its own options (e.g. ``model.stem_stride`` for EfficientNet-Lite0),
    so the config lets ``model.*`` through and the model factory rejects what it does not take."""
    from ferlab.models import create_from_config

    cfg = make_config(overrides=["model.name=efficientnet_lite0", "model.pretrained=none", "model.stem_stride=2"])
    assert create_from_config(cfg["model"]).backbone._conv_stem.stride == (2, 2)
    bad = make_config(overrides=["model.pretrained=none", "model.stem_stride=2"])  # resnet18 has no such option
    with pytest.raises(FerlabError, match="resnet18 does not take option.*stem_stride"):
        create_from_config(bad["model"])
