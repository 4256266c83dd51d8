"""The `medunet` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medunet.cli import main

REPO = Path(__file__).resolve().parents[1]


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


def test_blockwise_command_and_bundle_config_segment_a_zarr_volume(tmp_path: Path, capsys) -> None:
    """`medunet blockwise` and the bundles' blockwise.json: the same OME-Zarr labels as the in-memory inferer."""
    import numpy as np
    import tifffile
    import torch
    import zarr
    from monai.bundle import run

    from medunet.inference import OverlapTileInferer, to_channels_last
    from medunet.networks import ValidUNet

    torch.manual_seed(0)
    net = ValidUNet(spatial_dims=3, features=(4, 8, 16, 32), norm="batch", dropout=0.0).eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    data = np.random.default_rng(0).integers(0, 256, (24, 40, 36)).astype(np.uint8)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=data.shape, chunks=(16, 16, 16), dtype="uint8")[:] = data
    image = torch.from_numpy(data.astype(np.float32) * np.float32(0.5))[None, None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        channels_last = OverlapTileInferer(input_tile=(124, 124, 124), channels_last=True)  # blockwise's default
        expected = channels_last(image, to_channels_last(net))[0].argmax(0).numpy()
    finally:
        torch.set_num_threads(threads)
    args = ["blockwise", "--bundle", str(REPO / "bundles" / "unet3d"), "--checkpoint", str(tmp_path / "model.pt"),
            "--input", str(tmp_path / "in.zarr"), "--output", str(tmp_path / "cli.zarr"), "--input-tile", "124", "124", "124",
            "--block-shape", "24", "24", "24", "--scale", "0.5", "--threads", "1", "--override", "features=[4,8,16,32]",
            "--report", str(tmp_path / "report.json")]  # fmt: skip
    assert main([*args, "--tiff", str(tmp_path / "cli.ome.tif")]) == 0
    assert "4 of 4 blocks computed" in capsys.readouterr().out
    assert np.array_equal(zarr.open_array(str(tmp_path / "cli.zarr" / "0"))[:], expected)
    assert np.array_equal(tifffile.imread(tmp_path / "cli.ome.tif"), expected)  # the OME-TIFF export
    with pytest.raises(SystemExit, match=r"cli\.ome\.tif already exists"):  # refused before the (resumed) run
        main([*args, "--tiff", str(tmp_path / "cli.ome.tif")])
    assert json.loads((tmp_path / "report.json").read_text())["computed"] == 4
    with pytest.raises(SystemExit, match=r"cli\.zarr already exists and is another job's output"):
        main([*args[:-2], "--scale", "0.25"])
    with pytest.raises(SystemExit):  # an earlier version's flag: refused, naming the new one
        main([*args, "--tile", "124", "124", "124"])
    assert "--tile was renamed: use --input-tile (or --output-tile" in capsys.readouterr().err
    configs = REPO / "bundles" / "unet3d" / "configs"
    run(config_file=[str(configs / "inference.json"), str(configs / "blockwise.json")],
        ckpt_path=str(tmp_path / "model.pt"), features=[4, 8, 16, 32], input_volume=str(tmp_path / "in.zarr"),
        output_volume=str(tmp_path / "bundle.zarr"), output_tile=[36, 36, 36], block_shape=[24, 16, 32],
        intensity_scale=0.5, torch_threads=1)  # fmt: skip
    assert np.array_equal(zarr.open_array(str(tmp_path / "bundle.zarr" / "0"))[:], expected)


@pytest.mark.parametrize("command", ["blockwise", "evaluate"])
def test_bundle_overrides_of_the_cli_are_checked_before_any_work(command: str, tmp_path: Path) -> None:
    import nibabel as nib
    import numpy as np

    (tmp_path / "model.pt").write_bytes(b"never read: the settings are refused first")
    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
        nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), tmp_path / folder / "case.nii.gz")
    args = {
        "blockwise": ["--input", str(tmp_path / "in.zarr"), "--output", str(tmp_path / "out.zarr")],
        "evaluate": ["--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"), "--output",
                     str(tmp_path / "eval")],
    }[command]  # fmt: skip
    bundle = str(Path(__file__).resolve().parents[1] / "bundles" / "unet3d")
    with pytest.raises(SystemExit) as caught:
        main([command, "--bundle", bundle, "--checkpoint", str(tmp_path / "model.pt"), *args,
              "--override", "amp=maybe", "--override", "device=gpu"])  # fmt: skip
    message = str(caught.value)
    count = {"blockwise": 3, "evaluate": 2}[command]  # blockwise: the missing input volume is named too
    assert message.startswith(f"medunet {command}: {count} bundle settings are not valid; nothing was run.")
    if command == "blockwise":
        assert f"--input_volume: input_volume='{tmp_path / 'in.zarr'}' does not exist" in message
    assert "--amp: amp='maybe' is not a boolean; valid values are true/false, 1/0, yes/no (any case)" in message
    assert "--device: device='gpu' is not a device; valid values are auto" in message
    assert not (tmp_path / "out.zarr").exists()
    assert not (tmp_path / "eval").exists()


def test_weights_writes_a_checkpoints_model_as_a_model_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An epoch checkpoint (model, optimizer, trainer state) becomes a model file like best_model.pt, in float16 on
    request; the checkpoint itself is never overwritten; an unreadable one is a clear error."""
    import torch

    from medunet.networks import ValidUNet, load_weights

    network = ValidUNet(spatial_dims=2, in_channels=1, out_channels=2, features=[4, 8])
    checkpoint = tmp_path / "checkpoint_epoch=3.pt"
    torch.save({"model": network.state_dict(), "optimizer": {"state": {}}, "trainer": {"epoch": 3}}, checkpoint)
    target = tmp_path / "models" / "model.pt"
    assert main(["weights", str(checkpoint), "-o", str(target), "--dtype", "float16"]) == 0
    assert str(target) in capsys.readouterr().out
    stored = torch.load(target, weights_only=True)
    assert set(stored) == {"model"}
    for key, value in network.state_dict().items():
        assert stored["model"][key].dtype == (torch.float16 if value.is_floating_point() else value.dtype)
        assert torch.equal(stored["model"][key], value.to(stored["model"][key].dtype))
    load_weights(ValidUNet(spatial_dims=2, in_channels=1, out_channels=2, features=[4, 8]), target)
    before = checkpoint.read_bytes()
    with pytest.raises(SystemExit, match="is the checkpoint itself"):
        main(["weights", str(checkpoint), "-o", str(checkpoint)])
    assert checkpoint.read_bytes() == before
    with pytest.raises(SystemExit, match=r"medunet weights: checkpoint .* does not exist"):
        main(["weights", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.pt")])
