"""A bad case becomes a failure marker that names it; the other cases load."""

from __future__ import annotations

from medunet.engines import CaseDataset
from medunet.handlers.progress import CASE_ERROR, CASE_FAILED


def test_a_case_that_cannot_be_loaded_becomes_a_marker() -> None:
    def load(case: dict) -> dict:
        if case["image"].endswith("bad.png"):
            raise ValueError(f"{case['image']} cannot be read as a PNG image: truncated or corrupt")
        return {"image": case["image"].upper()}

    data = CaseDataset([{"image": "/d/a.png"}, {"image": "/d/bad.png"}, {"image": "/d/c.png"}], transform=load)
    assert data[0] == {"image": "/D/A.PNG"}
    assert data[1] == {
        CASE_FAILED: "bad.png",
        CASE_ERROR: "ValueError: /d/bad.png cannot be read as a PNG image: truncated or corrupt",
    }
    assert data[2] == {"image": "/D/C.PNG"}
