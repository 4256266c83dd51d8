"""Package names imported on first use: the same objects as their modules', and no torch for the torch-free parts."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from medunet.utils.lazy import lazy_exports


def test_names_resolve_to_their_modules_objects() -> None:
    import medunet.inference
    import medunet.inference.precision as precision
    import medunet.networks
    import medunet.transforms

    assert medunet.inference.precision_dtype is precision.precision_dtype
    assert medunet.networks.ValidUNet.__module__ == "medunet.networks.unet"
    assert medunet.transforms.PredictionToInstancesd.__module__ == "medunet.transforms.instances"
    assert isinstance(medunet.inference.streaming, types.ModuleType)  # a submodule, imported on first use
    for package in (medunet.inference, medunet.networks, medunet.transforms):
        assert all(getattr(package, name) is not None for name in package.__all__)  # every exported name resolves

    with pytest.raises(AttributeError, match=r"module 'medunet\.inference' has no attribute 'nothing'"):
        _ = medunet.inference.nothing


def test_a_missing_dependency_inside_a_module_is_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("fake_package")
    monkeypatch.setitem(sys.modules, "fake_package", package)
    getter = lazy_exports("fake_package", {"Thing": "fake_package.missing_module"})
    with pytest.raises(ModuleNotFoundError, match=r"fake_package\.missing_module"):
        getter("Thing")
    with pytest.raises(AttributeError, match="has no attribute 'other'"):
        getter("other")


def test_the_runtimes_modules_import_no_torch() -> None:
    """What medunet.runtime runs on (tile placement, geometry, regions, instance post-processing) loads neither
    torch nor MONAI, in a fresh interpreter."""
    code = (
        "import sys, medunet.inference.tiling, medunet.networks.geometry, medunet.utils.regions, "
        "medunet.transforms.functional.instances; print(sorted(m for m in ('torch', 'monai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
