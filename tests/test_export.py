"""Exporting a trained network: a ``torch.export`` program equal to the eager model, weights from checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medunet.export import export_program, load_program
from medunet.networks import ValidUNet, load_weights


def test_program_matches_eager_and_is_written_atomically(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = ValidUNet(2, 1, 2, features=(2, 4, 8)).eval()
    path = export_program(net, (60, 76), tmp_path / "out" / "model.pt2")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt2"]
    x = torch.randn(1, 1, 60, 76)
    with torch.inference_mode():
        torch.testing.assert_close(load_program(path)(x), net(x))
    with pytest.raises(ValueError, match="nearest valid input sizes"):
        export_program(net, (61, 76), tmp_path / "bad.pt2")
    assert not (tmp_path / "bad.pt2").exists()


def test_load_weights_from_bundle_checkpoint_or_bare_state(tmp_path: Path) -> None:
    source = ValidUNet(2, 1, 2, features=(2, 4))
    torch.save({"model": source.state_dict()}, tmp_path / "bundle.pt")
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    for name in ("bundle.pt", "bare.pt"):
        target = load_weights(ValidUNet(2, 1, 2, features=(2, 4)), tmp_path / name)
        assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), source.state_dict().values()))
