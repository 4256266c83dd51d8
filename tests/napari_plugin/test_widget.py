"""The napari widget in a real viewer (napari's make_napari_viewer fixture, Qt, on a virtual X screen): the shipped
nuclei model segments the selected layer in a worker thread into class and instance label layers with the image's
scale, the instances carry their measurements, the screenshot shows them; bad input is a message, not a crash."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("napari", reason="the napari plugin's tests need napari (pip install 'medunet[napari]')")
pytest.importorskip("pytestqt", reason="the napari plugin's tests need pytest-qt")
if not os.environ.get("DISPLAY"):
    pytest.skip(
        "no X display: napari draws with OpenGL, which Qt's offscreen platform lacks; install Xvfb (Debian: xvfb), "
        "which pytest-xvfb starts for the test session",
        allow_module_level=True,
    )

from medunet.napari_plugin.widget import BUNDLE_FOLDER, SegmentWidget
from tests.napari_plugin.test_layers import nuclei_image

SCREENSHOTS = os.environ.get("MEDUNET_SCREENSHOTS")
"""A folder to keep the screenshots in (docs/images for the documentation); by default they go to tmp_path."""


def _finish(qtbot: Any, widget: SegmentWidget) -> None:
    """Waits for the worker's end as the widget sees it (its button enabled again); waiting for the worker's
    signal itself could miss one emitted before the wait began."""
    qtbot.waitUntil(widget.run_button.isEnabled, timeout=120_000)


def test_the_widget_segments_the_selected_layer_into_labels_with_features(
    make_napari_viewer: Any, qtbot: Any, tmp_path: Path
) -> None:
    import imageio.v3 as iio

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 800)
    path = nuclei_image(tmp_path)
    image = viewer.add_image(iio.imread(path), name="nuclei image", scale=(0.5, 0.5), rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("medunet", "Segment (U-Net)")  # through the npe2 manifest
    assert isinstance(widget, SegmentWidget)
    assert widget.model_box.itemText(widget.model_box.count() - 1) == BUNDLE_FOLDER
    widget.select_model("nuclei")
    assert "nuclei" in widget.summary.text().lower()
    messages: list[str] = []
    widget.progressed.connect(messages.append)
    viewer.layers.selection.active = image
    worker = widget.run()
    assert worker is not None
    assert not widget.run_button.isEnabled()  # the viewer stays responsive; the button waits for the worker
    _finish(qtbot, widget)
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=10_000)
    classes, instances = viewer.layers[1], viewer.layers[2]
    assert classes.name == "nuclei image classes (nuclei)"
    assert instances.name == "nuclei image instances (nuclei)"
    assert tuple(instances.scale) == (0.5, 0.5) == tuple(classes.scale)
    assert instances.data.shape == image.data.shape[:2]
    count = int(instances.data.max())
    assert count > 0
    assert list(instances.features["index"]) == list(range(count + 1))
    assert instances.features["area_px"].iloc[1:].tolist() == [
        int((instances.data == k).sum()) for k in range(1, count + 1)
    ]
    assert messages[0] == "segmenting nuclei image with nuclei"
    assert f"{count} instances" in widget.status.text()
    assert widget.run_button.isEnabled()
    # the screenshot: the image with the instance layer over it, not blank, and the labels change it
    classes.visible = False
    with_labels = viewer.screenshot(canvas_only=True, flash=False)
    instances.visible = False
    without = viewer.screenshot(canvas_only=True, flash=False)
    instances.visible = True
    assert with_labels[..., :3].std() > 10
    changed = np.any(with_labels[..., :3] != without[..., :3], axis=-1).mean()
    assert changed > 0.02, f"the instance layer changes only {changed:.1%} of the canvas"
    viewer.reset_view()
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    iio.imwrite(folder / "napari_nuclei.png", viewer.screenshot(canvas_only=False, flash=False))


def test_bad_input_is_a_message_in_the_widget(make_napari_viewer: Any, qtbot: Any, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.run() is None  # nothing selected
    assert "select an image layer" in widget.status.text()
    viewer.add_labels(np.zeros((8, 8), np.uint8), name="mask")
    assert widget.run() is None
    assert "the active layer is a Labels layer" in widget.status.text()
    viewer.add_image(np.zeros((4, 40, 40), np.float32), name="stack")  # 3D, for a 2D model
    widget.select_model("nuclei")
    assert widget.run() is not None
    _finish(qtbot, widget)
    qtbot.waitUntil(lambda: "spatial axes" in widget.status.text(), timeout=10_000)
    assert "layer 'stack' has 3 spatial axes" in widget.status.text()
    assert "Choose a 3D model, or a 2D layer" in widget.status.text()
    assert widget.run_button.isEnabled()
    assert len(viewer.layers) == 2  # nothing added
    widget.select_model(str(tmp_path / "no_bundle"))  # a folder that is not a bundle
    assert widget.model_box.currentText() == BUNDLE_FOLDER
    assert widget.run() is None
    assert "not a shipped model and not a bundle folder" in widget.status.text()
    (tmp_path / "weightless" / "configs").mkdir(parents=True)
    (tmp_path / "weightless" / "configs" / "inference.json").write_text("{}")
    widget.select_model(str(tmp_path / "weightless"))
    assert widget.run() is None
    assert "has no trained weights" in widget.status.text()


def test_the_reader_opens_medunet_outputs_through_the_manifest(make_napari_viewer: Any, tmp_path: Path) -> None:
    import nibabel as nib
    from napari.layers import Image, Labels

    labels = np.zeros((6, 5, 4), np.uint8)  # (x, y, z)
    labels[1:3, 1:4, 2] = 1
    nib.save(nib.Nifti1Image(labels, np.diag([0.5, 0.6, 2.0, 1.0])), tmp_path / "case_seg.nii.gz")
    nib.save(nib.Nifti1Image(labels.astype(np.float32), np.diag([0.5, 0.6, 2.0, 1.0])), tmp_path / "case.nii.gz")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(tmp_path / "case.nii.gz"), plugin="medunet")
    [seg] = viewer.open(str(tmp_path / "case_seg.nii.gz"), plugin="medunet")
    assert isinstance(image, Image)
    assert isinstance(seg, Labels)
    assert seg.data.shape == (4, 5, 6)  # napari's (z, y, x)
    assert tuple(seg.scale) == pytest.approx((2.0, 0.6, 0.5))
    assert int(seg.data[2, 1:4, 1:3].sum()) == 6
