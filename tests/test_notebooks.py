"""The walkthrough notebooks run: their code cells are executed in order."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_code_runs(path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # plt.show() draws nothing instead of waiting for a window (a display may be present)
    cells = json.loads(path.read_text())["cells"]
    namespace: dict[str, object] = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
    output = capsys.readouterr().out
    assert "nuclei: " in output, "the shipped models are listed with their summaries"
    found = int(output.split(" nuclei in a ")[0].split()[-1])
    assert found >= 10, f"the shipped nuclei model found {found} nuclei"
    assert "median area" in output
    assert "max |tiled - whole| = " in output
    assert float(output.split("max |tiled - whole| = ")[1].split()[0]) < 1e-3
    assert "split='probability':" in output
    assert "objects of" in output
