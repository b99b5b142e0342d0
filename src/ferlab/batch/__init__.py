"""Batch processing of video and photo archives on Ray (``ferlab batch``; the ``cluster`` extra).

    from ferlab.batch import run_batch

    res = run_batch(["interviews/", "photos.txt"], "out/", workers=4, model="resnet18")
    print(len(res.done), "done,", len(res.failed), "failed ->", res.manifest)

Modules: ``inputs`` (files, folders, lists -> one input each), ``segments`` (when and how a
long video is split into time segments, one task each, track ids restarted at the borders),
``tasks`` (the work of one input or segment on a worker, the model loaded once per worker),
``manifest`` (journal, manifest.csv, summary.csv, what a rerun may skip), ``runner`` (Ray:
embedded or a cluster), ``cli``.
Nothing here imports Ray until a batch is run.
"""
from __future__ import annotations

from .._lazy import lazy_exports

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import BatchInput, expand_inputs
    from .runner import BatchResult, run_batch

_LAZY = {"run_batch": "runner", "BatchResult": "runner", "BatchInput": "inputs", "expand_inputs": "inputs"}


__getattr__, __all__ = lazy_exports(__name__, _LAZY)
