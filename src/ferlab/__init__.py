"""ferlab: real-time facial emotion recognition, trained on FER2013 (see README.md)."""
from __future__ import annotations

__version__ = "0.1.0"

from .constants import CLASS_NAMES, MEAN, NUM_CLASSES, STD  # noqa: E402
from .errors import FerlabError  # noqa: E402


def train(config: dict, **kwargs):  # noqa: ANN001, ANN201 - mirrors `ferlab train`
    """Train a model from a config dict (see :func:`ferlab.config.make_config`)."""
    from .training.trainer import train as _train

    return _train(config, **kwargs)


__all__ = ["CLASS_NAMES", "MEAN", "NUM_CLASSES", "STD", "FerlabError", "__version__", "train"]
