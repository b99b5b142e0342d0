"""ferlab: real-time facial emotion recognition, trained on FER2013 (see README.md)."""
from __future__ import annotations

from ._version import __version__  # noqa: E402
from .constants import CLASS_NAMES, MEAN, NUM_CLASSES, STD  # noqa: E402
from .errors import FerlabError  # noqa: E402


def analyze(image, model=None, **options):  # noqa: ANN001, ANN201 - the one call for a photo
    """Every face in a photo (path, URL, bytes or array) as plain records: box, emotions
    (name -> probability), dominant, uncertain (see :func:`ferlab.api.analyze`)."""
    from .api import analyze as _analyze

    return _analyze(image, model, **options)


def train(config, **kwargs):  # noqa: ANN001, ANN201 - mirrors `ferlab train`
    """Train a model from a config (:func:`ferlab.research.config.make_config`, or a plain mapping such as
    a run's ``config.json``; see :func:`ferlab.research.training.trainer.train`)."""
    from .research.training.trainer import train as _train

    return _train(config, **kwargs)


def evaluate(model=None, data=None, **kwargs):  # noqa: ANN001, ANN201 - mirrors `ferlab evaluate`
    """Evaluate a checkpoint on a FER2013 split (see :func:`ferlab.research.evaluation.run.evaluate`)."""
    from .research.evaluation.run import evaluate as _evaluate

    return _evaluate(model, data, **kwargs)


def gradcam(inputs, model=None, **kwargs):  # noqa: ANN001, ANN201 - mirrors `ferlab gradcam`
    """Grad-CAM overlays for face crops or photos (see :func:`ferlab.research.explain.images.gradcam`)."""
    from .research.explain.images import gradcam as _gradcam

    return _gradcam(inputs, model, **kwargs)


def __getattr__(name: str):  # noqa: ANN202 - lazy, so `import ferlab` stays free of torch/OpenCV
    if name == "Recognizer":
        from .inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CLASS_NAMES", "MEAN", "NUM_CLASSES", "STD", "FerlabError", "Recognizer", "__version__", "analyze", "evaluate",
           "gradcam", "train"]
