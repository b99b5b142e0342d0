"""Facts shared by every part of ferlab: the label set and the input normalisation.

They live in one place because a model is only usable if training, evaluation and
live inference agree on them exactly (thesis Eq. 27).
"""
from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SIZE = 48
# Thesis section 7.2 / Table 6: computed over the FER2013 training set on the [0, 1] scale.
MEAN = 0.507
STD = 0.255
