"""Checkpoints read into networks: clear errors naming the file for missing, unreadable, foreign checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from medunet.networks import ValidUNet, load_weights, read_checkpoint


def small(features: tuple[int, ...] = (4, 8), out_channels: int = 2) -> ValidUNet:
    return ValidUNet(spatial_dims=2, features=features, out_channels=out_channels)


@pytest.mark.parametrize("wrapped", [True, False])
def test_a_checkpoint_loads_into_its_network(tmp_path: Path, wrapped: bool) -> None:
    source = small()
    path = tmp_path / "model.pt"
    torch.save({"model": source.state_dict()} if wrapped else source.state_dict(), path)
    target = load_weights(small(), path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


def test_a_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nowhere\.pt does not exist.*checkpoint_epoch=N\.pt"):
        read_checkpoint(tmp_path / "nowhere.pt")


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_an_unreadable_checkpoint_names_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "model.pt"
    torch.save({"model": small().state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[content])
    with pytest.raises(ValueError, match=r"checkpoint .*model\.pt cannot be read .* truncated or corrupt"):
        load_weights(small(), path)


@pytest.mark.parametrize(
    ("other", "found"),
    [
        ({"features": (8, 16)}, r"weights differ in shape \(first: .* is \[8, 1, 3, 3\] there, \[4, 1, 3, 3\] here"),
        ({"features": (4, 8, 16)}, r"of its weights are not in this network"),
        ({"out_channels": 3}, r"1 weights differ in shape|2 weights differ in shape"),
    ],
)
def test_a_checkpoint_of_another_network_says_what_differs(tmp_path: Path, other: dict, found: str) -> None:
    path = tmp_path / "other.pt"
    torch.save({"model": small(**other).state_dict()}, path)
    with pytest.raises(ValueError, match=r"checkpoint .*other\.pt was saved from another network") as info:
        load_weights(small(), path)
    assert "config_merged.json" in str(info.value)
    assert re.search(found, str(info.value)), str(info.value)


def test_a_checkpoint_without_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3}, path)
    with pytest.raises(ValueError, match=r"numbers\.pt holds no model weights"):
        load_weights(small(), path)
