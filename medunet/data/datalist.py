"""Data lists in MONAI's decathlon JSON format, read and written in one place.

A data list is ``{"name": ..., "labels": {"0": "background", ...}, "training": [{"image": ..., "label": ...}],
"validation": [...]}`` with paths relative to the list's folder (``monai.data.load_decathlon_datalist`` resolves
them). :func:`read_datalist` checks the form and the files before a training starts, naming the entry and the fix;
:func:`write_datalist` writes one atomically with relative paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from monai.data import load_decathlon_datalist

from medunet.utils.files import atomic_write_json

__all__ = ["check_files", "read_datalist", "write_datalist"]


def read_datalist(listing: str | Path) -> dict[str, Any]:
    """The data list at ``listing``: its entries, and the ``training`` and ``validation`` cases with absolute paths
    (empty where the section is absent).

    Raises:
        ValueError: not valid JSON, not UTF-8, or not of the decathlon form (each naming the file and entry).
        FileNotFoundError: a file a case names is missing.
    """
    path = Path(listing)
    content = _read_json(path)
    result: dict[str, Any] = {k: v for k, v in content.items() if k not in ("training", "validation", "test")}
    for section in ("training", "validation"):
        result[section] = load_decathlon_datalist(path, data_list_key=section) if section in content else []
        check_files(path, section, result[section])
    return result


def write_datalist(datalist: dict[str, Any], path: str | Path) -> Path:
    """Writes a data list as JSON, paths made relative to its folder where possible."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def rel(value: Any) -> Any:
        if isinstance(value, str) and os.path.isabs(value):
            try:
                return os.path.relpath(value, out.parent)
            except ValueError:
                return value
        return value

    converted = dict(datalist)
    for section in ("training", "validation", "test"):
        if section in converted:
            converted[section] = [{k: rel(v) for k, v in item.items()} for item in converted[section]]
    atomic_write_json(out, converted, indent=2)
    return out


def _read_json(listing: Path) -> dict[str, Any]:
    """The JSON object of a decathlon-format data list, its sections checked to be lists of cases."""
    try:
        content = json.loads(listing.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{listing} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); fix the file "
            "(a trailing comma, a missing quote or bracket?)"
        ) from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{listing} is not a UTF-8 text file ({err.reason}); give a JSON data list") from err
    if not isinstance(content, dict):
        raise ValueError(
            f"{listing} holds a JSON {type(content).__name__}; a data list is an object such as "
            '{"training": [{"image": "imagesTr/a.png", "label": "labelsTr/a.png"}], "validation": [...]}'
        )
    for section in ("training", "validation"):
        cases = content.get(section, [])
        if not isinstance(cases, list):
            raise ValueError(f"{listing}: '{section}' must be a list of cases, got a {type(cases).__name__}")
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or not isinstance(case.get("image"), str) or not case["image"]:
                raise ValueError(
                    f"{listing}: {section}[{i}] is {case!r}; every case is an object with an 'image' path "
                    "(and a 'label' path for training), relative to the list's folder"
                )
    return content


def check_files(listing: str | Path, section: str, cases: list[dict[str, Any]]) -> None:
    """Every file a case names exists (before a training starts, rather than at the epoch that reaches it)."""
    for i, case in enumerate(cases):
        for key in ("image", "label"):
            if isinstance(case.get(key), str) and not Path(case[key]).exists():
                raise FileNotFoundError(
                    f"{listing}: {section}[{i}] names {key} {case[key]}, which does not exist (paths in the list "
                    "are relative to its folder); fix the entry or remove the case"
                )
