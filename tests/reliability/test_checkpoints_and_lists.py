"""Checkpoints and data lists from outside: a truncated, corrupt or foreign checkpoint and a malformed data list
are clear errors naming the file (and the entry), through the handler the bundles use and the CLI; the files are
never changed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from PIL import Image

from medunet.cli import main
from medunet.engines import resolve_datalist
from medunet.handlers import CheckpointLoader
from medunet.networks import ValidUNet

from . import unchanged


def network(features: tuple[int, ...] = (4, 8)) -> ValidUNet:
    return ValidUNet(spatial_dims=2, features=features)


def checkpoint(path: Path, content: str) -> Path:
    torch.save({"model": network((8, 16) if content == "other network" else (4, 8)).state_dict(), "epoch": 2}, path)
    data = path.read_bytes()
    if content == "truncated":
        path.write_bytes(data[: len(data) * 2 // 3])
    elif content == "garbage":
        path.write_bytes(b"<html>proxy error</html>")
    elif content == "not a checkpoint":
        torch.save({"epoch": 2}, path)
    return path


CHECKPOINT_CASES = {
    "truncated": r"cannot be read .* truncated or corrupt",
    "garbage": r"cannot be read .* truncated or corrupt",
    "other network": r"saved from another network .* differ in shape .* config_merged\.json",
    "not a checkpoint": r"holds no model weights",
}


@pytest.mark.parametrize("content", CHECKPOINT_CASES)
def test_checkpoint_loader_of_the_bundles_names_the_file(tmp_path: Path, content: str) -> None:
    path = checkpoint(tmp_path / "best_model.pt", content)
    loader = CheckpointLoader(load_path=str(path), load_dict={"model": network()}, map_location="cpu")
    engine = Engine(lambda *_: None)
    loader.attach(engine)
    with unchanged(path), pytest.raises(ValueError, match=CHECKPOINT_CASES[content]) as info:
        engine.run([0], max_epochs=1)
    assert str(path) in str(info.value)


def test_a_fitting_checkpoint_still_loads(tmp_path: Path) -> None:
    path = checkpoint(tmp_path / "best_model.pt", "fits")
    target = network()
    CheckpointLoader(load_path=str(path), load_dict={"model": target}, map_location="cpu")(Engine(lambda *_: None))
    assert torch.equal(target.state_dict()["head.weight"], torch.load(path)["model"]["head.weight"])


@pytest.mark.parametrize("content", ["truncated", "other network"])
def test_cli_export_names_the_checkpoint(tmp_path: Path, content: str) -> None:
    path = checkpoint(tmp_path / "model.pt", content)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"network_def": {"_target_": "medunet.networks.ValidUNet", "features": [4, 8]}}))
    with unchanged(path), pytest.raises(SystemExit, match=rf"medunet export: checkpoint {path}"):
        main(["export", "--config-file", str(config), "--ckpt-path", str(path), "--input-tile", "28", "28", "--output",
              str(tmp_path / "m.pt2")])  # fmt: skip
    assert not (tmp_path / "m.pt2").exists()


def _listing(folder: Path, text: str) -> Path:
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / "a.png")
    path = folder / "dataset.json"
    path.write_text(text)
    return path


GOOD_CASE = '{"image": "a.png", "label": "a.png"}'
LIST_CASES = {
    "trailing comma": ('{"training": [' + GOOD_CASE + ",]}", ValueError, r"is not valid JSON \(line 1, column \d+"),
    "truncated": ('{"training": [' + GOOD_CASE, ValueError, r"is not valid JSON"),
    "not UTF-8": (None, ValueError, r"is not a UTF-8 text file"),
    "a list, not an object": ("[" + GOOD_CASE + "]", ValueError, r"holds a JSON list; a data list is an object"),
    "training is an object": ('{"training": ' + GOOD_CASE + "}", ValueError, r"'training' must be a list"),
    "a case without image": ('{"training": [{"label": "a.png"}]}', ValueError, r"training\[0\] is .* 'image' path"),
    "a case that is a string": ('{"training": ["a.png"]}', ValueError, r"training\[0\] is 'a.png'"),
    "a missing file": (
        '{"training": [' + GOOD_CASE + ', {"image": "a.png", "label": "gone.png"}]}',
        FileNotFoundError,
        r"training\[1\] names label .*gone\.png, which does not exist",
    ),
    "a missing validation image": (
        '{"training": [' + GOOD_CASE + '], "validation": [{"image": "b.png"}]}',
        FileNotFoundError,
        r"validation\[0\] names image .*b\.png",
    ),
}


@pytest.mark.parametrize("case", LIST_CASES)
def test_a_malformed_data_list_names_the_file_and_entry(tmp_path: Path, case: str) -> None:
    text, error, message = LIST_CASES[case]
    path = _listing(tmp_path, text or "")
    if text is None:
        path.write_bytes(b'{"training": "\xff\xfe"}')
    with unchanged(path), pytest.raises(error, match=message) as info:
        resolve_datalist(tmp_path, tmp_path / "out")
    assert str(path) in str(info.value)


def test_a_valid_data_list_resolves(tmp_path: Path) -> None:
    _listing(tmp_path, '{"training": [' + GOOD_CASE + "]}")
    assert resolve_datalist(tmp_path, tmp_path / "out")["training"][0]["image"] == str(tmp_path / "a.png")
