"""The command line and the demo (the README's main job) on a short run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medunet.cli import main


def test_geometry_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geometry", "--input", "572", "572", "--output", "388", "388"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_for_input"] == [388, 388]
    assert info["input_for_output"] == [572, 572]
    with pytest.raises(SystemExit, match="nearest valid input sizes are 556 and 572"):
        main(["geometry", "--input", "570", "572"])


def test_demo_trains_and_segments(tmp_path: Path) -> None:
    assert main(["demo", "--output-dir", str(tmp_path), "--iterations", "60"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"overlay.png", "prediction.png", "model.pt"} <= set(summary["outputs"])
    assert summary["image_shape"] == [400, 520]
    # 60 iterations already separate cells from background clearly better than chance
    assert summary["dice_interior"] > 0.7
