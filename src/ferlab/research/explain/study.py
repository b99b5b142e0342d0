"""The class study of thesis section 8, made quantitative.

The thesis looked at Grad-CAM maps of 50 correctly classified test faces per class and named
each class's main attention region by eye (Table 8). Here the same maps are reduced to the
share of attention mass in fixed facial regions (:mod:`.regions`), so the claim "happy looks at
the mouth" becomes a number that can be compared between models and checked for chance level.
Test faces are only *looked at* here; nothing is selected or tuned on them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..evaluation.metrics import round_floats
from ..evaluation.predict import predict_probs
from ...fileio import write_json, write_text, write_with
from ...inference.preprocess import normalise
from .gradcam import gradcam_maps
from .regions import OTHER, REGION_BOXES, REGIONS, region_areas, region_map, region_shares

# Table 8 of the thesis, shown next to the measured shares.
THESIS_TABLE8 = {
    "angry": "Inner brow area, nasal root",
    "disgust": "Upper lip, nose bridge",
    "fear": "Eyes (widened), brow region",
    "happy": "Mouth corners, cheeks",
    "neutral": "Diffuse (no dominant region)",
    "sad": "Mouth corners (downturned), inner brows",
    "surprise": "Eyes (wide), jaw",
}


def select_correct(labels: np.ndarray, preds: np.ndarray, per_class: int, num_classes: int,
                   seed: int = 0) -> list[np.ndarray]:
    """Up to ``per_class`` correctly classified indices per class, a seeded random draw rather
    than the most confident ones (those would be the most caricatured faces)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(num_classes):
        ok = np.flatnonzero((labels == c) & (preds == c))
        out.append(np.sort(rng.permutation(ok)[:per_class]))
    return out


def area_for_half_mass(cam: np.ndarray) -> float:
    """Smallest share of the image holding half of the map's mass: ~0.5 for a flat (diffuse)
    map, small for a focused one. Measures "diffuse" without choosing a threshold."""
    v = np.sort(cam.ravel())[::-1]
    total = v.sum()
    if total <= 0:
        return float("nan")
    k = int(np.searchsorted(np.cumsum(v), 0.5 * total)) + 1
    return k / v.size


def class_study(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, class_names: list[str],
                mean: float, std: float, *, per_class: int = 50, seed: int = 0, batch_size: int = 256,
                device: str = "cpu") -> dict[str, Any]:
    """Per class: mean attention map (each map scaled to sum 1 first, so every face counts
    equally), mean region shares, lift over a uniform map (share / region area) and the
    primary region (highest lift)."""
    probs = predict_probs(model, images, mean, std, batch_size=batch_size, device=device)
    preds = probs.argmax(axis=1)
    chosen = select_correct(labels, preds, per_class, len(class_names), seed)
    areas = region_areas(images.shape[-1])
    names = (*REGIONS, OTHER)
    classes: dict[str, Any] = {}
    mean_maps = np.zeros((len(class_names), *images.shape[-2:]), dtype=np.float64)
    mean_faces = np.zeros_like(mean_maps)
    for c, idx in enumerate(chosen):
        entry: dict[str, Any] = {"n": int(len(idx)), "indices": idx.tolist()}
        if len(idx):
            x = normalise(torch.from_numpy(np.array(images[idx]))[:, None], mean, std)
            cams, _ = gradcam_maps(model, x, targets=torch.full((len(idx),), c), batch_size=batch_size)
            mass = cams.reshape(len(cams), -1).sum(axis=1)
            ok = mass > 0  # a face with no positive evidence at the layer has no attention to share
            entry["empty_maps"] = int((~ok).sum())
            mean_faces[c] = np.asarray(images[idx], dtype=np.float64).mean(axis=0)
            if ok.any():
                dist = cams[ok] / mass[ok, None, None]
                mean_maps[c] = dist.mean(axis=0)
                shares = region_shares(dist).mean(axis=0)
                lift = {n: float(shares[i] / areas[n]) for i, n in enumerate(names)}
                entry.update({
                    "shares": {n: float(shares[i]) for i, n in enumerate(names)},
                    "lift": lift,
                    "primary": max(REGIONS, key=lambda n: lift[n]),
                    "area_for_half_mass": area_for_half_mass(mean_maps[c]),
                })
        classes[class_names[c]] = entry
    return {"per_class_requested": per_class, "seed": seed,
            "regions": {n: [list(b) for b in boxes] for n, boxes in REGION_BOXES},
            "region_area": areas, "classes": classes,
            "_mean_maps": mean_maps, "_mean_faces": mean_faces}


def study_markdown(study: dict[str, Any], title: str) -> str:
    names = (*REGIONS, OTHER)
    head = ["class", "n"] + list(names) + ["primary (lift)", "area for 50%", "thesis Table 8"]
    lines = [f"# Grad-CAM class study: {title}", "",
             f"Up to {study['per_class_requested']} correctly classified faces per class (seeded random draw). "
             "Cells: mean share of Grad-CAM mass per region (each face's map sums to 1). "
             "*lift* = share / region area (1.0 = what a uniform map gives); *area for 50%* = smallest "
             "share of the image that holds half of the mean map's mass (0.5 = perfectly diffuse).", "",
             "| " + " | ".join(head) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(names) + 1) + ["---", "---:", "---"]) + " |"]
    for cls, e in study["classes"].items():
        if "shares" not in e:
            lines.append("| " + " | ".join([cls, str(e["n"])] + ["-"] * (len(names) + 2)
                                          + [THESIS_TABLE8.get(cls, "")]) + " |")
            continue
        cells = [f"{100 * e['shares'][n]:.1f}%" for n in names]
        p = e["primary"]
        lines.append("| " + " | ".join([cls, str(e["n"]), *cells, f"{p} ({e['lift'][p]:.2f}x)",
                                        f"{e['area_for_half_mass']:.2f}", THESIS_TABLE8.get(cls, "")]) + " |")
    lines += ["", "Region areas (share of the 48x48 image): "
              + ", ".join(f"{n} {100 * a:.1f}%" for n, a in study["region_area"].items()), "",
              "![mean Grad-CAM per class](gradcam_grid.png)", ""]
    return "\n".join(lines)


def plot_grid(study: dict[str, Any], class_names: list[str], path: str | Path, title: str = "") -> Path:
    """Row 1: mean face of the chosen samples with the region boxes; row 2: mean Grad-CAM on it."""
    from ..evaluation.plots import new_figure, save_png

    maps, faces = study["_mean_maps"], study["_mean_faces"]
    labels = region_map(faces.shape[-1])
    fig = new_figure(2.0 * len(class_names), 4.6)
    axes = fig.subplots(2, len(class_names), squeeze=False)
    for c, cls in enumerate(class_names):
        e = study["classes"][cls]
        top, bottom = axes[0][c], axes[1][c]
        top.set_title(f"{cls} (n={e['n']})", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if not e["n"] or "shares" not in e:
            for ax in (top, bottom):
                ax.set_axis_off()
            bottom.text(0.5, 0.5, "no correctly\nclassified faces", ha="center", va="center",
                        fontsize=8, transform=bottom.transAxes)
            continue
        top.imshow(faces[c], cmap="gray", vmin=0, vmax=255)
        for r in range(len(REGIONS)):
            top.contour((labels == r).astype(float), levels=[0.5], colors="yellow", linewidths=0.7)
        bottom.imshow(faces[c], cmap="gray", vmin=0, vmax=255)
        peak = maps[c].max()
        bottom.imshow(maps[c] / peak if peak > 0 else maps[c], cmap="jet", alpha=0.5, vmin=0, vmax=1)
        bottom.set_title(f"primary: {e['primary']}", fontsize=9)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def gradcam_study(model: str | Path | None = None, data: Any = None, *, split: str = "test", per_class: int = 50,
                  out: str | Path | None = None, batch_size: int = 256, device: str | None = "auto",
                  seed: int = 0) -> dict[str, Any]:
    """``ferlab gradcam-study``: writes study.json, study.md, gradcam_grid.png and
    mean_maps.npy (7 x 48 x 48, each summing to 1; zeros for a class with no correct face) to
    ``out`` and returns the JSON content
    (plus ``out``)."""
    from ..data import resolve_data
    from ..device import resolve_device
    from ..evaluation.run import model_label
    from ...models.hub import resolve_model
    from ..nets.checkpoint import load_checkpoint

    wpath = resolve_model(model)
    device = str(resolve_device(device))
    ckpt = load_checkpoint(wpath, map_location=device)
    sp = resolve_data(data).split(split)
    study = class_study(ckpt.model, sp.images, sp.labels, ckpt.class_names, ckpt.mean, ckpt.std,
                        per_class=per_class, seed=seed, batch_size=batch_size, device=device)
    label = model_label(model, wpath)
    for e in study["classes"].values():
        e["names"] = [sp.names[i] for i in e["indices"]] if sp.names else []
    out_dir = Path(out) if out else Path("runs") / f"gradcam-study-{label}-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    maps32 = study["_mean_maps"].astype(np.float32)
    write_with(out_dir / "mean_maps.npy", lambda p: _save_npy(p, maps32))
    plot_grid(study, ckpt.class_names, out_dir / "gradcam_grid.png", f"{label}: mean Grad-CAM, {split} split")
    result = {"model": label, "split": split,
              **round_floats({k: v for k, v in study.items() if not k.startswith("_")})}
    write_text(out_dir / "study.md", study_markdown(result, f"{label} on {split}"))
    write_json(out_dir / "study.json", result)
    result["out"] = str(out_dir)
    return result
