"""Grad-CAM: maps peak where the class evidence is, are non-negative and finite, leave no hooks
or gradients behind; the regions of the study sit on the FER2013 face; the commands write
their files."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ferlab.cli import main
from ferlab.research.explain.gradcam import GradCAM, gradcam_maps
from ferlab.research.explain.regions import OTHER, REGIONS, region_areas, region_map, region_shares


def _needs_haar() -> None:
    """Face detection needs OpenCV's bundled Haar files (opencv < 5, as pyproject pins)."""
    data = getattr(cv2, "data", None)
    if data is None or not (Path(data.haarcascades) / "haarcascade_frontalface_default.xml").is_file():
        pytest.skip("this OpenCV build ships no Haar cascade files")


def _quadrant(cam: np.ndarray) -> int:
    """0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, of the map's peak."""
    y, x = np.unravel_index(int(cam.argmax()), cam.shape)
    h, w = cam.shape
    return (0 if y < h // 2 else 2) + (0 if x < w // 2 else 1)


class BarNet(nn.Module):
    """Fixed weights: channel 0 detects horizontal bars, channel 1 vertical bars; class 0 is
    scored by channel 0, class 1 by channel 1. Max-pool makes the Grad-CAM layer coarser than
    the input, so upsampling is exercised too."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        horizontal = torch.tensor([[-1.0, -1, -1], [2, 2, 2], [-1, -1, -1]])
        conv.weight.data = torch.stack([horizontal, horizontal.T])[:, None]
        self.features = nn.Sequential(conv, nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.fc = nn.Linear(2, 7, bias=False)
        self.fc.weight.data.zero_()
        self.fc.weight.data[0, 0] = 1.0
        self.fc.weight.data[1, 1] = 1.0

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _bar_image(horizontal_at: tuple[int, int] | None, vertical_at: tuple[int, int] | None) -> torch.Tensor:
    img = torch.zeros(1, 1, 48, 48)
    if horizontal_at:
        y, x = horizontal_at
        img[0, 0, y:y + 10:3, x:x + 10] = 1.0  # three horizontal lines
    if vertical_at:
        y, x = vertical_at
        img[0, 0, y:y + 10, x:x + 10:3] = 1.0  # three vertical lines
    return img


def test_map_peaks_at_the_evidence_of_the_explained_class() -> None:
    model = BarNet().eval()
    x = _bar_image(horizontal_at=(3, 3), vertical_at=(34, 34))  # class 0 top-left, class 1 bottom-right
    cam0, _ = gradcam_maps(model, x, 0)
    cam1, _ = gradcam_maps(model, x, 1)
    assert cam0.shape == (1, 48, 48)
    assert _quadrant(cam0[0]) == 0 and _quadrant(cam1[0]) == 3
    # most of the mass sits in the evidence's quadrant, not just the peak (the rest: bar ends,
    # which each detector also answers weakly)
    assert cam0[0, :24, :24].sum() / cam0[0].sum() > 0.85
    assert cam1[0, 24:, 24:].sum() / cam1[0].sum() > 0.85


def test_default_target_is_the_predicted_class() -> None:
    model = BarNet().eval()
    x = torch.cat([_bar_image((3, 35), None), _bar_image(None, (35, 3))])
    cams, probs = gradcam_maps(model, x)
    assert probs.argmax(axis=1).tolist() == [0, 1]
    assert [_quadrant(c) for c in cams] == [1, 2]


def test_trained_tiny_model_attends_to_the_deciding_corner() -> None:
    """A real FerNet trained for a few steps on faces-shaped noise where a bright square in one
    corner decides the class: the explanation of each prediction must point at that corner."""
    from conftest import TINY_MODEL_CFG
    from ferlab.research.nets import create_from_config

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)

    def batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 4, (n,), generator=g)
        x = torch.rand(n, 1, 48, 48, generator=g) * 0.4
        for i, c in enumerate(y.tolist()):
            r0, c0 = (2 if c < 2 else 34), (2 if c % 2 == 0 else 34)
            x[i, 0, r0:r0 + 12, c0:c0 + 12] += 0.6
        return (x - 0.5) / 0.25, y

    model = create_from_config(dict(TINY_MODEL_CFG))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        x, y = batch(32)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = batch(64)
    cams, probs = gradcam_maps(model, x)
    assert (probs.argmax(axis=1) == y.numpy()).mean() > 0.9
    hits = np.mean([_quadrant(c) == int(t) for c, t in zip(cams, y)])
    assert hits > 0.9


def test_maps_are_finite_non_negative_and_side_effect_free(tiny_checkpoint: Path) -> None:
    from ferlab.research.nets import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).model
    model.train()
    x = torch.randn(6, 1, 48, 48) * 2
    cams, probs = gradcam_maps(model, x, batch_size=4)
    assert cams.shape == (6, 48, 48) and probs.shape == (6, 7)
    assert np.isfinite(cams).all() and (cams >= 0).all() and cams.max() > 0
    layer = model.gradcam_layer
    assert not layer._forward_hooks and not layer._backward_hooks
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())  # a mid-training call cannot disturb an optimiser
    assert model.training  # mode restored
    # samples are explained independently: batched == one at a time
    one, _ = gradcam_maps(model, x[2:3])
    np.testing.assert_allclose(cams[2], one[0], rtol=1e-4, atol=1e-6 * cams.max())


def test_hooks_removed_when_the_forward_pass_fails(tiny_checkpoint: Path) -> None:
    from ferlab.research.nets import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).model
    with pytest.raises(RuntimeError):
        gradcam_maps(model, torch.zeros(1, 3, 48, 48))  # wrong channel count
    assert not model.gradcam_layer._forward_hooks
    with pytest.raises(RuntimeError, match="context manager"):
        GradCAM(model)(torch.zeros(1, 1, 48, 48))


def test_frozen_model_gives_the_same_maps(tiny_checkpoint: Path) -> None:
    """Inference models have requires_grad off everywhere; Grad-CAM must still see gradients."""
    from ferlab.research.nets import load_checkpoint

    model = load_checkpoint(tiny_checkpoint).model
    x = torch.randn(3, 1, 48, 48)
    before, _ = gradcam_maps(model, x, 3)
    for p in model.parameters():
        p.requires_grad_(False)
    after, _ = gradcam_maps(model, x, 3)
    np.testing.assert_allclose(before, after)


# ----------------------------------------------------------------------------- regions

def test_regions_partition_the_face() -> None:
    lab = region_map()
    assert lab.shape == (48, 48) and set(np.unique(lab)) == set(range(len(REGIONS) + 1))
    areas = region_areas()
    assert sum(areas.values()) == pytest.approx(1.0)
    uniform = np.ones((48, 48))
    shares = region_shares(uniform)[0]
    assert shares == pytest.approx([areas[n] for n in (*REGIONS, OTHER)])
    maps = np.random.default_rng(0).random((4, 48, 48))
    np.testing.assert_allclose(region_shares(maps).sum(axis=1), 1.0)
    assert np.isnan(region_shares(np.zeros((48, 48)))).all()  # no mass: no made-up shares
    assert region_map(96).shape == (96, 96)


@pytest.mark.parametrize("point,region", [
    ((17, 14), "eyes"), ((17, 33), "eyes"),  # the mean face's eye minima
    ((12, 24), "brows"), ((12, 14), "brows"),
    ((18, 24), "nose"), ((28, 24), "nose"),  # nasal root between the eyes, nostrils
    ((38, 24), "mouth"), ((37, 15), "mouth"), ((37, 33), "mouth"),  # centre and corners
    ((27, 10), "cheeks_jaw"), ((45, 24), "cheeks_jaw"),
    ((2, 24), OTHER), ((30, 1), OTHER),  # hair, background
])
def test_landmarks_fall_in_their_region(point: tuple[int, int], region: str) -> None:
    cam = np.zeros((48, 48))
    cam[point] = 1.0
    shares = dict(zip((*REGIONS, OTHER), region_shares(cam)[0]))
    assert shares[region] == 1.0


def test_region_boxes_match_the_mean_fer2013_face(fer_data) -> None:  # noqa: ANN001
    """The eye rows are where the mean training face is darkest between brows and nose, and
    the eye columns are its darkest columns left and right of the midline."""
    mean = fer_data.split("train").images[::4].astype(np.float64).mean(axis=0)
    lab = region_map()
    eyes = REGIONS.index("eyes")
    eye_row = 8 + int(mean[8:26, 10:38].mean(axis=1).argmin())
    band = mean[eye_row - 2:eye_row + 3].mean(axis=0)
    left, right = 8 + int(band[8:22].argmin()), 26 + int(band[26:40].argmin())
    assert lab[eye_row, left] == eyes and lab[eye_row, right] == eyes
    mouth_row = 32 + int(mean[32:44, 16:32].mean(axis=1).argmin())
    assert lab[mouth_row, 24] == REGIONS.index("mouth")


# ----------------------------------------------------------------------------- commands

def test_gradcam_command_on_a_face_crop(tiny_checkpoint: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        cv2.imwrite(str(crops / f"{name}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["gradcam", "--model", str(tiny_checkpoint), str(crops), "--class", "Happy", "--out", str(out)]) == 0
    img = cv2.imread(str(out / "a_gradcam.png"))
    assert img is not None and img.shape == (26 + 192, 2 * 192 + 4, 3)  # caption over face | overlay
    records = json.loads((out / "gradcam.json").read_text())
    assert [r["explained"] for r in records] == ["happy", "happy"]
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-3 for r in records)
    assert "2 face(s) explained" in capsys.readouterr().out
    assert main(["gradcam", "--model", str(tiny_checkpoint), str(crops), "--class", "bored", "--out", str(out)]) == 2
    assert "unknown class 'bored'" in capsys.readouterr().err


def test_gradcam_command_without_faces_fails(tiny_checkpoint: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _needs_haar()
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((120, 160), 128, np.uint8))
    assert main(["gradcam", "--model", str(tiny_checkpoint), str(blank), "--out", str(tmp_path / "o")]) == 1
    assert "no face found" in capsys.readouterr().out


def test_gradcam_command_on_a_photo(tiny_checkpoint: Path, samples_dir: Path, tmp_path: Path) -> None:
    from ferlab import gradcam

    _needs_haar()
    out = tmp_path / "out"
    records = gradcam([samples_dir / "photos" / "obama.jpg"], tiny_checkpoint, out=out)
    faces = [r for r in records if r.get("face") is not None]
    assert len(faces) >= 1 and all(len(r["box"]) == 4 for r in faces)
    photo = cv2.imread(str(out / "obama_gradcam.png"))
    src = cv2.imread(str(samples_dir / "photos" / "obama.jpg"))
    assert photo.shape == src.shape
    assert (out / "obama_face0_gradcam.png").is_file()


def test_class_study_on_real_test_faces(tiny_checkpoint: Path, fer_data) -> None:  # noqa: ANN001
    from ferlab.research.data import FerSplit
    from ferlab.research.evaluation import predict_probs
    from ferlab.research.explain.study import class_study
    from ferlab.research.nets import load_checkpoint

    ckpt = load_checkpoint(tiny_checkpoint)
    sp: FerSplit = fer_data.split("test").subset(700)
    study = class_study(ckpt.model, sp.images, sp.labels, ckpt.class_names, ckpt.mean, ckpt.std, per_class=5)
    preds = predict_probs(ckpt.model, sp.images, ckpt.mean, ckpt.std).argmax(axis=1)
    filled = 0
    for c, name in enumerate(ckpt.class_names):
        e = study["classes"][name]
        assert e["n"] == min(5, int(((preds == c) & (sp.labels == c)).sum()))
        assert all(preds[i] == c and sp.labels[i] == c for i in e["indices"])  # only correct faces
        if "shares" in e:
            filled += 1
            assert sum(e["shares"].values()) == pytest.approx(1.0)
            assert e["primary"] in REGIONS
            assert study["_mean_maps"][c].sum() == pytest.approx(1.0)
            assert 0 < e["area_for_half_mass"] <= 0.5 + 1 / 2304
    assert filled >= 1
    again = class_study(ckpt.model, sp.images, sp.labels, ckpt.class_names, ckpt.mean, ckpt.std, per_class=5)
    assert again["classes"] == study["classes"]  # seeded draw: reproducible


def test_gradcam_study_command(tiny_checkpoint: Path, fer_root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    assert main(["gradcam-study", "--model", str(tiny_checkpoint), "--data", str(fer_root), "--split", "val",
                 "--per-class", "3", "--out", str(out)]) == 0
    for name in ("study.json", "study.md", "gradcam_grid.png", "mean_maps.npy"):
        assert (out / name).stat().st_size > 0
    result = json.loads((out / "study.json").read_text())
    assert set(result["classes"]) == set(json.loads((tiny_checkpoint.with_suffix(".json")).read_text())["class_names"])
    assert np.load(out / "mean_maps.npy").shape == (7, 48, 48)
    printed = capsys.readouterr().out
    assert "| class | n | brows | eyes | nose | mouth | cheeks_jaw | other |" in printed
