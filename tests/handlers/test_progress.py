"""Inference progress: one line per case with its position, name and time, and a summary."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from medunet.handlers import CaseProgress


def test_each_case_is_logged_with_its_position_and_name(caplog: pytest.LogCaptureFixture) -> None:
    cases = ["/data/a.nii.gz", "/data/series-1-2-3", "/data/c.png"]

    def step(_: Engine, name: str) -> list[dict]:
        return [{"pred": MetaTensor(torch.zeros(1, 2, 2), meta={"filename_or_obj": name})}]

    engine = Engine(step)
    CaseProgress().attach(engine)
    with caplog.at_level("INFO", logger="medunet.handlers.progress"):
        engine.run(cases, max_epochs=1)
    # this handler's lines only (ignite's engine logs at INFO too where an earlier test configured logging)
    lines = [r.getMessage() for r in caplog.records if r.name == "medunet.handlers.progress"]
    assert [line.split(" (")[0] for line in lines[:3]] == [
        "case 1 of 3: a.nii.gz",
        "case 2 of 3: series-1-2-3",
        "case 3 of 3: c.png",
    ]
    assert lines[3].startswith("3 cases in ")
