"""Fixed facial regions of the aligned 48x48 FER2013 face, for a quantitative Table 8.

FER2013 faces were registered by its authors so that each face is "more or less centred and
occupies about the same amount of space" (Goodfellow et al. 2013), so fixed boxes land on
roughly the same facial parts across images. The boxes were read off the mean face of the
28,709 training images (``mean_face`` below; see ``ferlab gradcam-study``'s grid, which draws
them on it): its intensity profiles put the eyes' dark minima at rows 16-19 and columns ~14 and
~33 (interocular distance ~19 px, midline at x ~23.5), the bright nose bridge between them at
columns 22-25, the nostril shadow at rows ~29-31 and the mouth's dark band at rows ~36-40,
with the face filling roughly columns 6-42. Each box is widened by 2-3 px around those
landmarks to absorb the registration jitter (a few pixels) and small head rotations.

Regions are painted in a fixed order onto a label map, later ones over earlier ones, so they
never overlap; pixels in no region (forehead, hair, background, ears) are ``other``. Shares of
a map's mass over all regions plus ``other`` therefore sum to 1.
"""
from __future__ import annotations

import numpy as np

from ...constants import IMAGE_SIZE

# (name, [(y0, y1, x0, x1), ...]) with half-open bounds in 48x48 pixel coordinates, in paint
# order: the broad cheeks/jaw area first, then the features that sit inside it.
REGION_BOXES: tuple[tuple[str, tuple[tuple[int, int, int, int], ...]], ...] = (
    # below the eyes to the chin, between the face edges; the parts not claimed by the
    # nose and mouth below are cheeks (beside the nose), mouth sides and jaw/chin
    ("cheeks_jaw", ((22, 48, 6, 42),)),
    # inner canthi to nostrils: nasal root/bridge (between the eyes) and the nose itself
    ("nose", ((15, 22, 20, 28), (22, 32, 17, 31))),
    # lips and mouth corners (the mouth spans about columns 15-33)
    ("mouth", ((32, 43, 13, 35),)),
    # both eyes with lids, up to where the brows begin
    ("eyes", ((15, 22, 7, 20), (15, 22, 28, 41))),
    # eyebrows and the glabella between them (inner-brow raise/lower, AU1/AU4)
    ("brows", ((9, 15, 7, 41),)),
)
REGIONS: tuple[str, ...] = ("brows", "eyes", "nose", "mouth", "cheeks_jaw")
OTHER = "other"


def region_map(size: int = IMAGE_SIZE) -> np.ndarray:
    """(size, size) int map: index into ``REGIONS``, or ``len(REGIONS)`` for ``other``.
    Boxes are defined at 48x48 and scaled for other sizes."""
    labels = np.full((IMAGE_SIZE, IMAGE_SIZE), len(REGIONS), dtype=np.int64)
    for name, boxes in REGION_BOXES:
        for y0, y1, x0, x1 in boxes:
            labels[y0:y1, x0:x1] = REGIONS.index(name)
    if size != IMAGE_SIZE:
        idx = (np.arange(size) * IMAGE_SIZE) // size
        labels = labels[np.ix_(idx, idx)]
    return labels


def region_areas(size: int = IMAGE_SIZE) -> dict[str, float]:
    """Share of the image each region covers: the attention share a uniform map would give."""
    counts = np.bincount(region_map(size).ravel(), minlength=len(REGIONS) + 1)
    return {name: float(c / counts.sum()) for name, c in zip((*REGIONS, OTHER), counts)}


def region_shares(cams: np.ndarray) -> np.ndarray:
    """Share of each map's total mass in every region: (N, H, W) -> (N, len(REGIONS) + 1), rows
    summing to 1 (the last column is ``other``). A map with no mass gets NaN, not a fake share."""
    cams = np.asarray(cams, dtype=np.float64)
    if cams.ndim == 2:
        cams = cams[None]
    labels = region_map(cams.shape[-1]).ravel()
    onehot = np.eye(len(REGIONS) + 1)[labels]  # (H*W, R+1)
    mass = cams.reshape(len(cams), -1) @ onehot
    total = mass.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, mass / total, np.nan)


def mean_face(images: np.ndarray) -> np.ndarray:
    """Pixel-wise mean of uint8 faces, float64 (N, H, W) -> (H, W)."""
    return np.asarray(images, dtype=np.float64).mean(axis=0)
