"""Reading checkpoints into networks, with errors that name the file, what is wrong and the fix.

``torch.load`` on a truncated or foreign file fails deep in its zip or pickle reader ("failed finding central
directory", "invalid load key") without the file's name, and ``load_state_dict`` on a checkpoint of another
network lists every mismatching tensor without saying which setting differs. These functions say both.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from medunet.utils.files import atomic_write

__all__ = ["checkpoint_mismatch", "load_weights", "model_state", "read_checkpoint", "unreadable_checkpoint"]

_SETTINGS = "features, in_channels, out_channels, spatial_dims and pool_sizes"


def unreadable_checkpoint(path: str | Path, err: BaseException) -> ValueError:
    """The error for a checkpoint file that ``torch.load`` cannot read."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(
        f"checkpoint {path} cannot be read ({type(err).__name__}: {reason}): it is truncated or corrupt (a copy "
        "that did not finish?) or not a torch checkpoint. Use another checkpoint of the run (checkpoint_epoch=N.pt "
        "or best_model.pt in its output_dir) or train again"
    )


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``. ValueError: the file is not a readable checkpoint.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"checkpoint {file} does not exist; give the path of a checkpoint written by a medunet training "
            "(checkpoint_epoch=N.pt or best_model.pt in its output_dir)"
        )
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError) as err:
        raise unreadable_checkpoint(file, err) from err


def model_state(checkpoint: Any, path: str | Path) -> Mapping[str, torch.Tensor]:
    """The model weights in a checkpoint: its ``"model"`` entry (medunet's checkpoints) or the checkpoint itself
    when it is a bare state dict.

    Raises:
        ValueError: the checkpoint holds no tensors by name.
    """
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else checkpoint
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"checkpoint {path} holds no model weights (a 'model' entry or a state dict of tensors); give a "
            "checkpoint written by a medunet training"
        )
    return state


def checkpoint_mismatch(network: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> ValueError | None:
    """None when ``state`` fits ``network`` tensor for tensor; otherwise the error saying how they differ."""
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        (k, tuple(state[k].shape), tuple(own[k].shape))
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    found = []
    if shapes:
        key, theirs, ours = shapes[0]
        found.append(f"{len(shapes)} weights differ in shape (first: {key} is {list(theirs)} there, {list(ours)} here)")
    if missing:
        found.append(f"{len(missing)} weights of this network are not in it (first: {missing[0]})")
    if unexpected:
        found.append(f"{len(unexpected)} of its weights are not in this network (first: {unexpected[0]})")
    return ValueError(
        f"checkpoint {path} was saved from another network than the {type(network).__name__} configured here: "
        f"{'; '.join(found)}. Configure the network it was trained with ({_SETTINGS} as in that run's "
        "config_merged.json), or use a checkpoint of this network"
    )


def load_weights(network: torch.nn.Module, checkpoint: str | Path) -> torch.nn.Module:
    """Loads a checkpoint (``{"model": state_dict}`` or a bare state dict) into ``network``.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_checkpoint`, :func:`model_state`,
            :func:`checkpoint_mismatch`.
    """
    state = model_state(read_checkpoint(checkpoint), checkpoint)
    error = checkpoint_mismatch(network, state, checkpoint)
    if error is not None:
        raise error
    network.load_state_dict(state)
    return network


def cast_floating(state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """A state dict with its floating-point tensors in ``dtype`` (integer buffers kept as they are)."""
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}


def write_model_file(checkpoint: str | Path, target: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """The model weights of ``checkpoint`` (an epoch checkpoint with optimizer and trainer state, or a model file)
    written to ``target`` as ``best_model.pt`` stores them (``{"model": state}``, floating-point tensors in
    ``dtype``), atomically: e.g. a run's last epoch as a shipped ``models/model.pt``.

    Raises:
        FileNotFoundError, ValueError: an unreadable checkpoint (:func:`read_checkpoint`, :func:`model_state`);
            ``target`` is ``checkpoint`` itself (it is never overwritten).
    """
    source, out = Path(checkpoint), Path(target)
    if out.exists() and source.exists() and out.resolve() == source.resolve():
        raise ValueError(f"{out} is the checkpoint itself; write the model file to another path")
    state = cast_floating(model_state(read_checkpoint(source), source), dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda fh: torch.save({"model": state}, fh))
