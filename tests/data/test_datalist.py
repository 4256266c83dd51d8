"""Data lists read and written in one place: relative paths, checks that name the file, the entry and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medunet.data.datalist import read_datalist, write_datalist


def test_written_with_relative_paths_and_read_back_absolute(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    for name in ("a.png", "a_seg.png", "b.png"):
        (tmp_path / "images" / name).write_bytes(b"")
    datalist = {
        "name": "two",
        "training": [{"image": str(tmp_path / "images" / "a.png"), "label": str(tmp_path / "images" / "a_seg.png")}],
        "validation": [{"image": str(tmp_path / "images" / "b.png")}],
    }
    path = write_datalist(datalist, tmp_path / "lists" / "list.json")
    assert json.loads(path.read_text())["training"][0]["image"] == "../images/a.png"
    assert read_datalist(path) == datalist
    assert not [p.name for p in (tmp_path / "lists").iterdir() if p.name.startswith(".")]  # written atomically


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"training": [}', r"list\.json is not valid JSON \(line 1, column 15"),
        ("[1, 2]", r"holds a JSON list; a data list is an object"),
        ('{"training": {"image": "a.png"}}', r"'training' must be a list of cases, got a dict"),
        ('{"training": [{"label": "a.png"}]}', r"training\[0\] is .* every case is an object with an 'image' path"),
        ('{"training": [{"image": "gone.png"}]}', r"training\[0\] names image .*gone\.png, which does not exist"),
    ],
)
def test_bad_lists_are_named_with_the_fix(content: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read_datalist(tmp_path / "list.json")
