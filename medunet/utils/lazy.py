"""Package namespaces whose names are imported on first use.

``medunet.networks``, ``medunet.inference`` and ``medunet.transforms`` name classes whose modules import torch
and MONAI; their torch-free modules (the size arithmetic of :mod:`medunet.networks.geometry`, the tile placement
of :mod:`medunet.inference.tiling`, the instance post-processing of
:mod:`medunet.transforms.functional.instances`) are what :mod:`medunet.runtime` runs on, in an environment without
torch. So these packages import nothing when they are imported: a name is imported from its module when it is
first read (PEP 562), and type checkers see the plain imports under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports ``names[name]`` (a module) and returns its ``name``,
    or the submodule ``package.name``; the value is kept in the package, so each is imported once."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as err:
                if err.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
