"""Where the data is: the ``--data`` argument, else ``$FERLAB_DATA``, read in this one place.

Every command that needs FER2013 (train, evaluate, the experiments, the Grad-CAM study) takes
the same answer, so setting the variable once works for all of them and a missing path fails
with the same one-line message everywhere.
"""
from __future__ import annotations

import os
from typing import Any

from ...errors import FerlabError
from .dataset import FerData

ENV = "FERLAB_DATA"
WHAT = "FER2013 folder or fer2013.csv"


def resolve_root(arg: str | os.PathLike[str] | None, default: str | os.PathLike[str] | None = None) -> str:
    """``arg`` if given, else ``$FERLAB_DATA``, else ``default`` (e.g. a config's ``data.root``)."""
    root = arg or os.environ.get(ENV) or default
    if not root:
        raise FerlabError(f"no data: pass --data PATH ({WHAT}) or set {ENV}")
    return str(root)


def resolve_data(data: Any = None, *, skip_bad: bool = False) -> FerData:
    """A loaded :class:`FerData` as is, else a path (see :func:`resolve_root`) loaded with the cache."""
    if isinstance(data, FerData):
        return data
    from .fer2013 import load_fer2013

    return load_fer2013(resolve_root(data), skip_bad=skip_bad)
