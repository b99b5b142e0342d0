"""Batch processing of video and photo archives on Ray (``ferlab batch``; the ``cluster`` extra).

    from ferlab.batch import run_batch

    res = run_batch(["interviews/", "photos.txt"], "out/", workers=4, model="resnet18")
    print(len(res.done), "done,", len(res.failed), "failed ->", res.manifest)

Modules: ``inputs`` (files, folders, lists -> one input each), ``tasks`` (the work of one input
on a worker, the model loaded once per worker), ``manifest`` (journal, manifest.csv,
summary.csv, what a rerun may skip), ``runner`` (Ray: embedded or a cluster), ``cli``.
Nothing here imports Ray until a batch is run.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .inputs import BatchInput, expand_inputs
    from .runner import BatchResult, run_batch

_LAZY = {"run_batch": "runner", "BatchResult": "runner", "BatchInput": "inputs", "expand_inputs": "inputs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
