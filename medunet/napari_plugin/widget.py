"""The napari widget: segment the selected image layer with a shipped model or a bundle folder.

The work runs in a napari worker thread (:func:`napari.qt.threading.create_worker`), so the viewer stays responsive;
each step is shown under a busy progress bar, and an error (a model that cannot be loaded, a layer that does not fit
the model) is shown in the widget and as a napari notification instead of being raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from medunet.napari_plugin.layers import ModelChoice, SegmentedLayer, available_models, describe_model, segment_layer

if TYPE_CHECKING:
    import napari

__all__ = ["BUNDLE_FOLDER", "SegmentWidget"]

BUNDLE_FOLDER = "a bundle folder..."
"""The model list's last entry: any bundle folder, typed or browsed for."""


class SegmentWidget(QWidget):
    """Model list (with the chosen model's one-line summary), an optional bundle folder, a Segment button, a busy bar
    and a status line. The result: ``<layer> classes`` and ``<layer> instances`` label layers with the image's scale
    and translation; the instances carry the per-instance measurements as their features table."""

    progressed = Signal(str)  # a step's message, emitted from the worker thread

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.models: list[ModelChoice] = available_models()
        self.worker: Any = None
        self.model_box = QComboBox()
        for choice in self.models:
            self.model_box.addItem(f"{choice.name} ({choice.spatial_dims}D)", choice.name)
        self.model_box.addItem(BUNDLE_FOLDER, None)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("bundle folder (with configs/inference.json and models/model.pt)")
        self.browse = QPushButton("Browse...")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.run_button = QPushButton("Segment selected image layer")
        self.busy = QProgressBar()
        self.busy.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumHeight(80)  # room for a wrapped error message
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder)
        folder_row.addWidget(self.browse)
        layout = QVBoxLayout()
        layout.addWidget(QLabel("Model"))
        layout.addWidget(self.model_box)
        layout.addLayout(folder_row)
        layout.addWidget(self.summary)
        layout.addWidget(self.run_button)
        layout.addWidget(self.busy)
        layout.addWidget(self.status)
        layout.addStretch()
        self.setLayout(layout)
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.browse.clicked.connect(self._browse)
        self.run_button.clicked.connect(self.run)
        self.progressed.connect(self._show)
        self._model_changed()

    # -- the model ---------------------------------------------------------------------------------------------
    def model(self) -> str:
        """The chosen model: a shipped model's name, or the bundle folder typed in."""
        name = self.model_box.currentData()
        return str(name) if name is not None else self.folder.text().strip()

    def select_model(self, model: str) -> None:
        """Chooses a shipped model by name, or the bundle-folder entry with ``model`` as the folder."""
        index = self.model_box.findData(model)
        if index < 0:
            self.folder.setText(model)
            index = self.model_box.count() - 1
        self.model_box.setCurrentIndex(index)
        self._model_changed()

    def _model_changed(self, *_: object) -> None:
        is_folder = self.model_box.currentData() is None
        self.folder.setVisible(is_folder)
        self.browse.setVisible(is_folder)
        choice = next((m for m in self.models if m.name == self.model_box.currentData()), None)
        self.summary.setText(choice.summary if choice else "any medunet bundle folder with trained weights")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "medunet bundle folder")
        if folder:
            self.folder.setText(folder)

    # -- running -----------------------------------------------------------------------------------------------
    def _show(self, message: str, error: bool = False) -> None:
        self.status.setText(message)
        self.status.setStyleSheet("color: #e05050;" if error else "")

    def _fail(self, message: str) -> None:
        from napari.utils.notifications import show_error

        self._show(message, error=True)
        show_error(f"medunet: {message}")

    def run(self) -> Any:
        """Segments the selected image layer in a worker thread; returns the worker (None when nothing started)."""
        from napari.layers import Image

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image):
            self._fail("select an image layer to segment (the active layer is "
                       + (f"a {type(layer).__name__} layer)" if layer is not None else "none)"))  # fmt: skip
            return None
        model = self.model()
        if not model:
            self._fail("choose a model, or give a bundle folder")
            return None
        try:  # the model's errors (no such bundle, no weights) before any thread starts
            describe_model(model)
        except (ValueError, FileNotFoundError) as err:
            self._fail(str(err))
            return None
        return self._start(layer, model)

    def _start(self, layer: Any, model: str) -> Any:
        from napari.qt.threading import create_worker

        def work() -> SegmentedLayer:  # in the worker thread; progress reaches the widget as a queued signal
            return segment_layer(model, layer.data, name=layer.name, rgb=bool(layer.rgb), scale=tuple(layer.scale),
                                 progress=self.progressed.emit)  # fmt: skip

        self.run_button.setEnabled(False)
        self.busy.setRange(0, 0)  # busy: the steps have no known length
        self.busy.setVisible(True)
        self._show(f"segmenting {layer.name} with {model}...")
        # errors go to the widget (the default would re-raise them in the Qt event loop)
        connections = {
            "returned": lambda result: self._add_layers(layer, model, result),
            "errored": lambda err: self._fail(f"{layer.name}: {err}"),
            "finished": self._done,
        }
        worker = create_worker(work, _connect=connections, _start_thread=False)
        self.worker = worker
        worker.start()
        return worker

    def _done(self) -> None:
        self.run_button.setEnabled(True)
        self.busy.setVisible(False)

    def _add_layers(self, layer: Any, model: str, result: SegmentedLayer) -> None:
        common = {
            "scale": tuple(layer.scale)[: result.labels.ndim],
            "translate": tuple(layer.translate)[: result.labels.ndim],
        }
        name = Path(model).name
        self.viewer.add_labels(result.labels, name=f"{layer.name} classes ({name})", opacity=0.4, **common)
        if result.instances is not None:
            self.viewer.add_labels(
                result.instances, name=f"{layer.name} instances ({name})", features=result.features, **common
            )
        count = len(result.features["index"]) - 1 if result.features else None
        self._show(
            f"{layer.name}: segmented with {name}"
            + (f", {count} instances (measurements in the instance layer's features)" if count is not None else "")
            + (" (blockwise, read lazily from " + str(result.outputs[0]) + ")" if result.blockwise else "")
        )
