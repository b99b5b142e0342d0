"""Package attributes loaded on first use (PEP 562), so importing a package - as building the
``ferlab`` parser does - costs nothing until a name is used, and the core install (no PyTorch)
can import every area."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` that imports ``package.<names[attr]>`` when ``attr`` is first
    asked for, and the matching ``__all__``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f".{names[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(names)
