"""The `medunet` command line."""

from __future__ import annotations

import json

import pytest

from medunet.cli import main


def test_geometry_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["geometry", "--input", "572", "572", "--output", "388", "388"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output_for_input"] == [388, 388]
    assert info["input_for_output"] == [572, 572]
    with pytest.raises(SystemExit, match="nearest valid input sizes are 556 and 572"):
        main(["geometry", "--input", "570", "572"])
