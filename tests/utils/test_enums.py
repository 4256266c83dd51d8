"""Options as enums: look-up is case-insensitive and an unknown value lists the valid ones."""

from __future__ import annotations

import pytest

from medunet.utils.enums import PaddingMode, QueryLevel, RetrieveMethod, look_up, option_values


def test_look_up_accepts_members_and_values_in_any_case() -> None:
    assert look_up(PaddingMode.REFLECT, PaddingMode, "padding_mode") is PaddingMode.REFLECT
    assert look_up("Symmetric", PaddingMode, "padding_mode") is PaddingMode.SYMMETRIC
    assert look_up("series", QueryLevel, "level") is QueryLevel.SERIES  # upper-case values match too


def test_unknown_value_names_parameter_and_valid_options() -> None:
    with pytest.raises(ValueError, match=r"^retrieve='ftp' is not supported; valid options are 'move', 'get', 'wado'$"):
        look_up("ftp", RetrieveMethod, "retrieve")


def test_option_values_for_command_line_choices() -> None:
    assert option_values(RetrieveMethod) == ["move", "get", "wado"]
