"""A PNG of predictions overlaid on a validation image, refreshed at every validation."""

from __future__ import annotations

from pathlib import Path

from ignite.engine import Engine, Events

from medunet.utils.overlay import overlay_png

__all__ = ["ValidationSnapshot"]


class ValidationSnapshot:
    """Writes ``<output_dir>/val_overlay.png`` from the first case of each validation run.

    Reads ``image``, ``pred`` and ``label`` from the evaluator's (decollated) output.
    """

    def __init__(self, output_dir: str | Path, filename: str = "val_overlay.png") -> None:
        self.path = Path(output_dir) / filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch_length = engine.state.epoch_length or 1
        if (engine.state.iteration - 1) % epoch_length != 0:
            return
        output = engine.state.output
        first = output[0] if isinstance(output, list) else output
        if not isinstance(first, dict) or "pred" not in first or "image" not in first:
            return
        image, pred, label = first["image"], first["pred"], first.get("label")
        if not isinstance(output, list):  # an evaluator with decollate=False: (B, C, *S) tensors
            image, pred, label = image[0], pred[0], None if label is None else label[0]
        overlay_png(image, pred, label, self.path)
