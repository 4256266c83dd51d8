"""The `medunet` command line."""

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


def test_pacs_settings_errors_exit_with_the_file_named(tmp_path: Path) -> None:
    bad = tmp_path / "pacs.json"
    bad.write_text('{"port": "x"}')
    with pytest.raises(
        SystemExit, match=r"medunet pacs echo: .*pacs\.json: setting 'port' = 'x' must be a whole number"
    ):
        main(["pacs", "echo", "--config", str(bad)])


def test_retrieve_choices_come_from_the_enum(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["pacs", "segment", "--bundle", "b", "--checkpoint", "c", "--study-uid", "1", "--retrieve", "ftp"])
    error = capsys.readouterr().err.replace("'", "")  # Python versions differ in quoting the choices
    assert "invalid choice: ftp (choose from move, get, wado)" in error


def test_listen_uses_the_listeners_quiet_time_unless_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The command line passes --idle-seconds only when given, so the default is the library's."""
    import medunet.apps.pacs_listener as listener_module
    import medunet.apps.segmenter as segmenter_module

    made: list[listener_module.PacsListener] = []

    class Listener(listener_module.PacsListener):
        def start(self) -> None:
            made.append(self)

        def wait_idle(self, timeout: float) -> bool:
            raise KeyboardInterrupt  # what Ctrl-C does to the command's wait loop

        def stop(self) -> None:
            pass

    monkeypatch.setattr(listener_module, "PacsListener", Listener)
    monkeypatch.setattr(segmenter_module, "BundleSegmenter", lambda *args: object())
    args = [
        "pacs",
        "listen",
        "--bundle",
        "b",
        "--checkpoint",
        "c",
        "--allowed-aet",
        "SCANNER",
        "--work-dir",
        str(tmp_path),
    ]
    assert main(args) == 0
    assert main([*args, "--idle-seconds", "7.5", "--host", "0.0.0.0", "--port", "11190"]) == 0
    assert [m.idle_seconds for m in made] == [listener_module.DEFAULT_IDLE_SECONDS, 7.5]
    assert [(m.host, m.port) for m in made] == [("127.0.0.1", 11112), ("0.0.0.0", 11190)]  # loopback by default
