"""Run configuration: defaults <- YAML (with ``base:``) <- API sections <- ``key=value``."""
from __future__ import annotations

from pathlib import Path

import pytest

from ferlab.research.config import make_config, parse_override, validate_config
from ferlab.research.config_schema import MODEL_DEFAULTS, Config
from ferlab.errors import FerlabError
from ferlab.research.experiments.runner import CONFIGS_DIR

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_thesis_recipe() -> None:
    """Section 6.1-6.2 / Table 6: the defaults alone must reproduce the final model's recipe."""
    cfg = make_config()
    assert isinstance(cfg, Config)
    assert cfg.model | {} == {"name": "resnet18", "pretrained": "imagenet", "head": [256],
                              "dropout": [0.5, 0.25], "in_chans": 1, "stem": "thesis"}
    t = cfg.train
    assert (t.epochs, t.batch_size, t.optimizer, t.lr, t.scheduler) == (50, 64, "adam", 2e-4, "cosine")
    assert (t.label_smoothing, t.class_weights, t.select_metric) == (0.1, True, "val_acc")
    assert cfg.augment.erasing_p == 0.3
    assert (cfg.arch, cfg.pretrained) == ("resnet18", "imagenet")
    # make_config must never hand out the shared defaults themselves.
    cfg.model["head"].append(1)
    assert MODEL_DEFAULTS["head"] == [256] and make_config().model["head"] == [256]


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path / "run.yaml",
                  "name: exp13\nmodel:\n  head: [256, 128]\ntrain:\n  epochs: 30\n  lr: 1.0e-4\n")
    cfg = make_config(path, ["train.epochs=3", "model.dropout=[0.3, 0.15]"])
    assert cfg.name == "exp13"
    assert cfg.model["head"] == [256, 128]
    assert cfg.train.lr == 1e-4
    assert cfg.train.epochs == 3  # the command line wins over the file
    assert cfg.model["dropout"] == [0.3, 0.15]
    assert cfg.train.batch_size == 64  # untouched keys keep the defaults
    assert cfg.arch == "resnet18"


def test_dotted_keys_and_yaml_typed_values() -> None:
    cfg = make_config(overrides=["model.name=fernet", "train.amp=false", "data.train_subset=500",
                                 "data.root=", "augment.scale=[0.9, 1.1]", "train.betas=[0.8, 0.99]"])
    assert cfg.arch == "fernet"
    assert cfg.train.amp is False
    assert cfg.data.train_subset == 500
    assert cfg.data.root is None
    assert cfg.augment.scale == [0.9, 1.1]
    assert cfg.train.betas == [0.8, 0.99]


def test_scientific_notation_is_a_number(tmp_path: Path) -> None:
    """Plain PyYAML reads ``1e-4`` as the *string* '1e-4' (YAML 1.1); a learning rate given that
    way must still be a float, on the command line and in files."""
    cfg = make_config(overrides=["lr=3e-4", "weight_decay=5E-5", "eta_min=1e-6"])
    assert cfg.train.lr == pytest.approx(3e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == pytest.approx(5e-5)
    path = _write(tmp_path / "sci.yaml", "train:\n  lr: 1e-3\n")
    assert make_config(path).train.lr == pytest.approx(1e-3)
    assert parse_override("name=run1e5")[1] == "run1e5"  # words stay words


def test_shortcut_keys() -> None:
    cfg = make_config(overrides=["epochs=1", "batch_size=32", "erasing_p=0.5", "seed=7"])
    assert cfg.train.epochs == 1
    assert cfg.train.batch_size == 32
    assert cfg.augment.erasing_p == 0.5
    assert cfg.seed == 7  # a top-level key is not redirected
    assert "epochs" not in cfg.model_dump()


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
    assert cfg.name == "child"
    assert cfg.train.epochs == 5  # child over parent
    assert cfg.train.lr == 0.01  # command line over everything
    assert cfg.model["head"] == [512]  # from the grandparent
    assert cfg.model["dropout"] == [0.6, 0.3]
    assert cfg.train.batch_size == 64  # defaults below all
    assert "base" not in cfg.model_dump()


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
    assert cfg.train.batch_size == 8  # section over file
    assert cfg.train.epochs == 2  # override over section


def test_model_options_are_checked_against_the_architecture_at_load() -> None:
    """Each architecture has its own options (e.g. ``model.stem_stride`` for EfficientNet-Lite0):
    the config asks the model factory's builder for ``model.name`` which options it takes, so an
    option the model does not take fails when the config is made, not when training starts."""
    from ferlab.research.nets import create_from_config

    cfg = make_config(overrides=["model.name=efficientnet_lite0", "model.pretrained=none", "model.stem_stride=2"])
    assert create_from_config(cfg.model).backbone._conv_stem.stride == (2, 2)
    # order of overrides does not matter: the whole command line is checked at once
    cfg2 = make_config(overrides=["model.stem_stride=2", "model.name=efficientnet_lite0", "model.pretrained=none"])
    assert cfg2.model == cfg.model
    with pytest.raises(FerlabError, match=r"unknown config key 'model.stem_stride' in override "
                                          r"'model.stem_stride=2' \(resnet18 takes .*stem\)"):
        make_config(overrides=["model.pretrained=none", "model.stem_stride=2"])
    with pytest.raises(FerlabError, match="config key 'model.stem_stride'.*valid integer.*'two'"):
        make_config(overrides=["model.name=efficientnet_lite0", "model.stem_stride=two"])
    with pytest.raises(FerlabError, match="config key 'model.name'.*unknown model 'resnet19'.*resnet18"):
        make_config(overrides=["model.name=resnet19"])
    with pytest.raises(FerlabError, match="config key 'model.stem'.*'thesis' or 'original'"):
        make_config(overrides=["model.stem=tiny"])


# ----------------------------------------------------------------------------- typed, checked at load

# the training configs of the repository, and the experiments' configs installed with the package
COMMITTED = sorted((REPO / "maintainers" / "configs").rglob("*.yaml")) + sorted(CONFIGS_DIR.glob("*.yaml"))


def test_there_are_committed_configs() -> None:
    assert len(COMMITTED) >= 20 and any(p.name == "thesis.yaml" for p in COMMITTED)
    assert len(list(CONFIGS_DIR.glob("*.yaml"))) >= 20


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_every_committed_config_loads(path: Path) -> None:
    cfg = make_config(path)
    assert validate_config(cfg) == cfg  # already in canonical form: checking again changes nothing
    assert validate_config(cfg.model_dump()) == cfg  # and its JSON form (config.json) reads back the same
    assert cfg.name == path.stem


@pytest.mark.parametrize("override,match", [
    ("epochs=many", r"^config key 'train.epochs' in override 'epochs=many': .*valid integer.*'many'$"),
    ("epochs=0", r"^config key 'train.epochs' .*greater than or equal to 1"),
    ("train.lr=fast", r"^config key 'train.lr' .*valid number"),
    ("optimizer=rmsprop", r"^config key 'train.optimizer' .*'adam', 'adamw' or 'sgd', got 'rmsprop'$"),
    ("scheduler=onecycle", r"^config key 'train.scheduler' .*'cosine', 'step' or 'none', got 'onecycle'$"),
    ("select_metric=test_acc", r"^config key 'train.select_metric' .*'val_acc'"),
    ("amp=fp16", r"^config key 'train.amp' .*boolean or .*'auto' or 'bf16'"),
    ("betas=[0.9]", r"^config key 'train.betas' .*at least 2 items"),
    ("erasing_p=1.5", r"^config key 'augment.erasing_p' .*less than or equal to 1"),
    ("data.train_subset=-5", r"^config key 'data.train_subset' "),
    ("seed=abc", r"^config key 'seed' "),
    ("train=5", r"^config key 'train' .*valid dictionary"),
])
def test_wrong_types_and_unknown_choices_fail_at_load_naming_the_key(override: str, match: str) -> None:
    with pytest.raises(FerlabError, match=match) as info:
        make_config(overrides=[override])
    assert "\n" not in str(info.value)


def test_type_errors_name_the_file_or_the_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.yaml", "train:\n  optimizer: adagrad\n")
    with pytest.raises(FerlabError, match=r"config key 'train.optimizer' in .*bad.yaml: .*'adagrad'"):
        make_config(path)
    with pytest.raises(FerlabError, match=r"config key 'train.batch_size' in arguments: .*valid integer"):
        make_config(train={"batch_size": "lots"})


def test_values_are_coerced_to_their_types(tmp_path: Path) -> None:
    cfg = make_config(overrides=["lr=1", "epochs=3.0", "class_weights=yes"], data={"root": tmp_path})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.train.class_weights is True
    assert cfg.data.root == str(tmp_path)  # a Path is stored as text (config.json)


def test_validate_config_fills_defaults_and_keeps_a_given_model_section() -> None:
    """``ferlab.train(cfg_dict)`` checks a hand-built dict; a model section replaced as a whole
    keeps exactly its keys (no thesis defaults such as pretrained=imagenet slip into a FerNet)."""
    cfg = validate_config({"name": "x", "model": {"name": "fernet", "widths": [8, 8, 8, 8]},
                           "train": {"epochs": 2}})
    assert cfg.model == {"name": "fernet", "widths": [8, 8, 8, 8]}
    assert cfg.pretrained == "none"  # an unset model.pretrained reads as none
    assert cfg.train.epochs == 2 and cfg.train.batch_size == 64
    with pytest.raises(FerlabError, match="unknown config key 'train.epohcs' in config"):
        validate_config({"train": {"epohcs": 2}})


def test_choices_are_exactly_what_the_trainer_implements() -> None:
    """Every optimizer and scheduler the schema offers is built by the trainer's factories (and
    nothing else is offered): ``onecycle`` was once advertised and failed at the first batch."""
    import torch

    from ferlab.research.config_schema import OPTIMIZERS, SCHEDULERS
    from ferlab.research.training import optim
    from ferlab.research.training.schedule import LR_KINDS, lr_at

    assert set(OPTIMIZERS) == set(optim.OPTIMIZERS)
    assert set(SCHEDULERS) == set(LR_KINDS)
    for name in OPTIMIZERS:
        cfg = make_config(overrides=[f"optimizer={name}"])
        opt = optim.create_optimizer(cfg.train, [torch.nn.Parameter(torch.zeros(3))])
        assert opt.param_groups[0]["lr"] == cfg.train.lr
    for name in SCHEDULERS:
        cfg = make_config(overrides=[f"scheduler={name}", "epochs=10"])
        sched = optim.create_scheduler(cfg.train, steps_per_epoch=5)
        lrs = [sched.lr(e, s) for e in range(10) for s in range(5)]
        assert all(0 < v <= cfg.train.lr for v in lrs) and lrs == [lr_at(cfg.train, e, s, 5) for e in range(10)
                                                                  for s in range(5)]


def test_settings_difference_names_the_first_setting_that_changes_a_run() -> None:
    """What ``--resume`` and the experiments suite compare: every setting but where the data lies
    and how many threads read it; a nested or missing key is named by its dotted path."""
    from ferlab.research.config import run_settings, settings_difference

    base = make_config(overrides=["model.name=fernet"])
    moved = make_config(overrides=["model.name=fernet", "data.root=/elsewhere", "train.threads=1"])
    assert settings_difference(base, moved) is None and run_settings(base) == run_settings(moved)
    assert "root" not in run_settings(moved)["data"] and moved.data.root == "/elsewhere"  # the input is not changed
    assert run_settings(moved) == run_settings(moved.model_dump())  # a Config and its config.json agree
    assert settings_difference(base, make_config(overrides=["model.name=fernet", "augment.scale=[0.9,1.1]"])) == \
        "augment.scale: was [1.0, 1.0], now [0.9, 1.1]"
    assert settings_difference({"train": {"lr": 1e-3}}, {"train": {}}) == "train.lr: was 0.001, now None"


def test_assignments_are_checked_and_the_trainer_gets_its_own_copy() -> None:
    """A config changed after loading stays valid: a wrong type or an unknown key fails where it
    is written; ``validate_config`` (what ``train`` calls first) returns a copy, so a caller
    changing its config afterwards does not reach a run."""
    cfg = make_config()
    cfg.train.epochs = 3
    with pytest.raises(ValueError, match="valid integer"):
        cfg.train.epochs = "many"
    with pytest.raises(ValueError, match="no attribute .epohcs."):
        cfg.train.epohcs = 3
    with pytest.raises(ValueError, match="unknown model"):
        cfg.model = {"name": "resnet19"}
    cfg.data.root = Path("/data/fer2013")
    assert cfg.data.root == "/data/fer2013"
    checked = validate_config(cfg)
    assert checked == cfg and checked is not cfg
    cfg.model["head"].append(7)
    assert checked.model["head"] == [256]
    with pytest.raises(FerlabError, match="a config must be a mapping"):
        validate_config(["train"])
