"""The functions bundle configs call instead of ``$`` logic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from monai.data import MetaTensor

import medunet.inference
from medunet.engines import active, amp_default, image_meta, run_name, saved_label_scale, weight_map_source


def test_amp_on_cuda_and_for_training_on_a_native_bf16_cpu() -> None:
    assert amp_default("cpu") is False
    assert amp_default(torch.device("cuda:1")) is False  # inference: float32 unless a preset asks
    assert amp_default(torch.device("cuda:1"), True) is True
    assert amp_default("cpu", True) is medunet.inference.cpu_has_native_bf16()


def test_weight_map_source_follows_the_binary_flag() -> None:
    assert weight_map_source(True) == "label"
    assert weight_map_source(False) == "instances"


def test_run_name_from_bundle_stage_and_output_folder(tmp_path: Path) -> None:
    assert run_name("unet2d", tmp_path / "isbi") == "unet2d-isbi"
    assert run_name("unet3d", str(tmp_path / "spleen") + "/", "eval") == "unet3d-eval-spleen"


def test_saved_label_scale() -> None:
    assert saved_label_scale(".png", 2) == 255
    assert saved_label_scale(".PNG", 2) == 255
    assert saved_label_scale(".png", 3) is None
    assert saved_label_scale(".nii.gz", 2) is None


def test_active_drops_disabled_handlers() -> None:
    a, b = object(), object()
    assert active([a, None, b, None]) == [a, b]


def test_image_meta_of_a_decollated_batch() -> None:
    batch = [{"image": MetaTensor(torch.zeros(1), meta={"filename_or_obj": f"case{i}"})} for i in range(2)]
    assert [m["filename_or_obj"] for m in image_meta(batch)] == ["case0", "case1"]


def test_place_network_and_cuda_amp() -> None:
    from medunet.engines import cuda_amp, place_network
    from medunet.networks import ValidUNet

    net = ValidUNet(2, 1, 2, features=(4, 8, 16))
    placed = place_network(net, "cpu", True)
    assert placed is net
    assert next(p for p in net.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    assert place_network(ValidUNet(2, 1, 2, features=(4, 8, 16)), "cpu", False) is not None
    assert cuda_amp(True, "cpu") is False
    assert cuda_amp(True, "cuda:0") is True
    assert cuda_amp(False, "cuda") is False


def test_bundle_root_is_the_folder_of_the_config_being_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monai.bundle import ConfigWorkflow

    from medunet.engines import bundle_root

    configs = tmp_path / "copied_bundle" / "configs"
    configs.mkdir(parents=True)
    (configs / "metadata.json").write_text("{}")
    (configs / "inference.json").write_text(
        '{"imports": ["$import medunet", "$import medunet.engines"], "bundle_root": "$medunet.engines.bundle_root()",'
        ' "ckpt_path": "$@bundle_root + \'/models/model.pt\'", "initialize": ["@ckpt_path"], "run": []}'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # MONAI's workflows put the bundle they ran on sys.path (and leave it there): none of earlier tests' bundles
    monkeypatch.setattr(sys, "path", [p for p in sys.path if not (Path(p) / "configs" / "metadata.json").is_file()])
    workflow = ConfigWorkflow(config_file=str(configs / "inference.json"), workflow_type=None)
    assert workflow.initialize() == [str(configs.parent / "models" / "model.pt")]
    assert bundle_root() == str(elsewhere)  # outside a workflow, and no bundle on sys.path: the working directory
