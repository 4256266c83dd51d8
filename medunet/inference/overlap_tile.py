"""Exact overlap-tile inference with mirror extrapolation and flip test-time augmentation.

The paper's overlap-tile strategy (Ronneberger et al. 2015, Fig. 2): the image is extended at its
borders by mirroring, cut into input tiles placed on the pooling grid, and the output tiles are put
side by side. For a network in eval mode without instance normalisation the result equals one pass
over the whole mirror-extended image (see :mod:`medunet.inference.tiling` for why MONAI's
``sliding_window_inference`` cannot do this). The out-of-core path (a region or a whole volume that is not in
memory) is :mod:`medunet.inference.streaming`; both run their tiles through :meth:`OverlapTileInferer.run_tiles`
and average flips with :meth:`OverlapTileInferer.over_flips`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from medunet.inference.cost import TileCostModel
from medunet.inference.precision import precision_dtype, to_channels_last
from medunet.inference.tiling import TilePlan, flip_subsets, placement, plan_tiles
from medunet.networks.geometry import UNetGeometry
from medunet.utils.enums import OutputMode, PaddingMode, Precision, ProbabilityDtype, VolumeOutput, look_up
from medunet.utils.regions import extract_region
from medunet.utils.values import as_bool

__all__ = ["NetworkCall", "OverlapTileInferer", "channel_argmax", "scores_to_volume"]

logger = logging.getLogger(__name__)

_CPU_BUDGET_CAP = 8 * 1024**3


def _default_memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.8)
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 1024**3
    return int(min(available // 4, _CPU_BUDGET_CAP))


def _unwrap(network: Callable[..., torch.Tensor]) -> Any:
    """The module that carries ``geometry`` (looks through DataParallel/DDP ``.module`` wrappers)."""
    net: Any = network
    while not hasattr(net, "geometry") and hasattr(net, "module"):
        net = net.module
    return net


@dataclass(frozen=True)
class NetworkCall:
    """How the network is called for one inference: the network and its extra arguments, the device it runs on
    (``sw_device``), the device its output tiles go to (``out_device``) and the autocast type (None: float32)."""

    network: Callable[..., torch.Tensor]
    sw_device: torch.device
    out_device: torch.device
    autocast: torch.dtype | None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


class OverlapTileInferer(Inferer):
    """Tiles on the pooling grid, mirror-extended borders, optional flip TTA; output = input's spatial size.

    Args:
        input_tile: input tile size (a valid network input per axis; non-positive entries mean the whole image
            along that axis).
        output_tile: or the output tile size (a size the network produces per axis); give one of the two. Neither:
            chosen by the planner, the tile with the least total computation that fits ``memory_budget``.
        sw_batch_size: tiles per network call.
        padding_mode: border extension, see :class:`medunet.utils.enums.PaddingMode` (``"symmetric"``, the
            paper's mirroring, by default).
        flip_axes: spatial axes (0-based, not counting batch and channel) for flip test-time augmentation:
            the prediction is averaged over all ``2**len(flip_axes)`` flips. Empty: off.
        memory_budget: bytes the tiles of one network call may use; default 80 % of free memory on CUDA,
            a quarter of available RAM (at most 8 GiB) on the CPU.
        sw_device: device the network runs on (default: the input's device).
        device: device the full output is stitched on (default: the input's device), e.g. the CPU for large
            volumes while tiles run on CUDA.
        progress: show a tqdm progress bar over tile batches.
        output: ``"logits"`` or ``"probabilities"`` (softmax over channels). With flip TTA, ``"probabilities"``
            averages the softmax over flips (nnU-Net v1's mirroring) and ``"logits"`` averages the logits
            (nnU-Net v2's).
        precision: ``"float32"`` (default), ``"bfloat16"`` (CUDA, or a CPU with native bfloat16) or ``"float16"``
            (CUDA), see :class:`~medunet.utils.enums.Precision`; a preset the device cannot run fast is refused
            when the inferer runs (:func:`~medunet.inference.precision_dtype`). float32 is the exactness contract:
            only then does the tiled result equal a whole-image pass up to float32 rounding.
        channels_last: hand the tiles to the network in channels-last memory format (convert the network
            with :func:`~medunet.inference.precision.to_channels_last` as well for the fast kernels).
        geometry: the network's :class:`UNetGeometry`; by default read from ``network.geometry``.

    Shapes:
        ``inputs``: ``(B, C, *S)`` tensor or MetaTensor, any ``S``; returns ``(B, out_channels, *S)``
        float32, a MetaTensor with the input's metadata (affine) when the input is one.
    """

    def __init__(
        self,
        input_tile: Sequence[int] | int | None = None,
        sw_batch_size: int = 1,
        padding_mode: str | PaddingMode = PaddingMode.SYMMETRIC,
        flip_axes: Sequence[int] = (),
        memory_budget: int | None = None,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        output: str | OutputMode = OutputMode.LOGITS,
        precision: str | Precision = Precision.FLOAT32,
        geometry: UNetGeometry | None = None,
        channels_last: bool = False,
        output_tile: Sequence[int] | int | None = None,
    ) -> None:
        super().__init__()
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        if memory_budget is not None and memory_budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
        if input_tile is not None and output_tile is not None:
            raise ValueError(
                f"input_tile={input_tile} and output_tile={output_tile} both given; give one (the other follows "
                "from the network's margin)"
            )
        self.input_tile = input_tile
        self.output_tile = output_tile
        self.sw_batch_size = int(sw_batch_size)
        self.padding_mode = look_up(padding_mode, PaddingMode, "padding_mode")
        self.flip_axes = tuple(int(a) for a in flip_axes)
        if len(set(self.flip_axes)) != len(self.flip_axes) or any(a < 0 for a in self.flip_axes):
            raise ValueError(f"flip_axes must be distinct non-negative spatial axes, got {flip_axes}")
        self.memory_budget = memory_budget
        self.sw_device = None if sw_device is None else torch.device(sw_device)
        self.device = None if device is None else torch.device(device)
        self.progress = progress
        self.output = look_up(output, OutputMode, "output")
        self.precision = look_up(precision, Precision, "precision")
        self.geometry = geometry
        self.channels_last = as_bool(channels_last, "channels_last")

    def network_geometry(self, network: Callable[..., torch.Tensor]) -> tuple[UNetGeometry, Any]:
        """The geometry the tiles are planned with, and the module that carries it (through ``.module`` wrappers)."""
        net = _unwrap(network)
        geometry = self.geometry if self.geometry is not None else getattr(net, "geometry", None)
        if not isinstance(geometry, UNetGeometry):
            raise TypeError(
                "OverlapTileInferer needs the network's geometry: pass a medunet ValidUNet (or a wrapper with "
                "`.module`), or give geometry=UNetGeometry(...) to the inferer"
            )
        return geometry, net

    def network_device(self, given: torch.device | str | None = None) -> torch.device:
        """Where the network runs: ``given``, else the inferer's ``sw_device``, else the CPU."""
        if given is not None:
            return torch.device(given)
        return self.sw_device or torch.device("cpu")

    def autocast_type(self, sw_device: torch.device) -> torch.dtype | None:
        """The autocast type of the precision preset for a network on ``sw_device`` (None: float32).

        Raises:
            ValueError: the device cannot run the preset fast (see :func:`~medunet.inference.precision_dtype`).
        """
        return precision_dtype(self.precision, sw_device)

    def plan(
        self, image_shape: Sequence[int], network: Callable[..., torch.Tensor], sw_device: torch.device | None = None
    ) -> TilePlan:
        """The tile plan this inferer uses for an image of spatial shape ``image_shape``.

        The memory estimate counts 2 bytes per activation under a bfloat16 / float16 preset, 4 otherwise.
        """
        device = self.network_device(sw_device)
        geometry, net = self.network_geometry(network)
        dims = geometry.spatial_dims
        tile = self.input_tile
        if self.output_tile is not None:
            wanted = (self.output_tile,) * dims if isinstance(self.output_tile, int) else self.output_tile
            tile = geometry.input_tile_for(wanted)
        elif isinstance(tile, int):
            tile = (tile,) * dims
        cost = None
        if getattr(net, "features", None) is not None:
            cost = TileCostModel.for_network(net, self.autocast_type(device) or torch.float32, geometry, device)
        budget = self.memory_budget
        if tile is None and budget is None and cost is not None:
            budget = _default_memory_budget(device)
        return plan_tiles(
            geometry, image_shape, input_tile=tile, cost=cost, memory_budget=budget, batch_size=self.sw_batch_size
        )

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        geometry, net = self.network_geometry(network)
        dims = geometry.spatial_dims
        _check_inputs(inputs, dims)
        if any(a >= dims for a in self.flip_axes):
            raise ValueError(f"flip_axes {self.flip_axes} must be spatial axes in [0, {dims - 1}]")
        if any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in getattr(net, "modules", list)()):
            logger.warning(
                "the network uses instance normalisation, whose statistics depend on the tile: the tiled result "
                "differs from a whole-image pass (use norm=None or 'batch' for exact tiling)"
            )
        sw_device = self.network_device(self.sw_device or inputs.device)
        call = NetworkCall(
            network, sw_device, self.device or inputs.device, self.autocast_type(sw_device), args, kwargs
        )
        plan = self.plan(inputs.shape[2:], network, sw_device)
        logger.debug("overlap-tile plan: %s", plan)
        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs

        def flipped(flip: tuple[int, ...]) -> torch.Tensor:
            axes = [d + 2 for d in flip]
            out = self._tiled(image.flip(axes) if flip else image, plan, call)
            return out.flip(axes) if flip else out

        with torch.inference_mode():
            result = self.over_flips(flipped)
        if isinstance(inputs, MetaTensor):
            meta_out = MetaTensor(result)
            meta_out.copy_meta_from(inputs)
            return meta_out
        return result

    def over_flips(self, predict: Callable[[tuple[int, ...]], torch.Tensor]) -> torch.Tensor:
        """Flip test-time augmentation: the mean of ``predict(flip)`` over every subset of ``flip_axes`` (spatial
        axes; the empty one, no flip, first), where ``predict`` returns its result in the unflipped orientation."""
        subsets = flip_subsets(self.flip_axes)
        result = predict(subsets[0])
        for flip in subsets[1:]:
            result.add_(predict(flip))
        if len(subsets) > 1:
            result.div_(len(subsets))
        return result

    def _tiled(self, image: torch.Tensor, plan: TilePlan, call: NetworkCall) -> torch.Tensor:
        batch = image.shape[0]
        units = [(b, start) for b in range(batch) for start in plan.tile_starts()]
        output: list[torch.Tensor] = []

        def read(unit: tuple[int, tuple[int, ...]]) -> torch.Tensor:
            b, start = unit
            return extract_region(
                image[b], [s - m for s, m in zip(start, plan.margin)], plan.input_tile, self.padding_mode
            )

        def write(unit: tuple[int, tuple[int, ...]], tile_out: torch.Tensor) -> None:
            b, start = unit
            if not output:
                output.append(
                    torch.empty(
                        (batch, tile_out.shape[0], *plan.image_shape), dtype=torch.float32, device=call.out_device
                    )
                )
            dst, src = placement(start, plan.output_tile, (0,) * len(start), plan.image_shape)
            output[0][b][(slice(None), *dst)] = tile_out[(slice(None), *src)]

        self.run_tiles(units, read, write, call)
        return output[0]

    def run_tiles(
        self,
        units: Sequence[Any],
        read: Callable[[Any], torch.Tensor],
        write: Callable[[Any, torch.Tensor], None],
        call: NetworkCall,
    ) -> None:
        """Runs the network on the input tile ``read(unit)`` of every unit, ``sw_batch_size`` at a time, and hands
        each output tile (float32, ``(C_out, *output_tile)``, on ``call.out_device``; softmax applied for
        ``output="probabilities"``) to ``write(unit, tile)``."""
        chunks: Iterator[Sequence[Any]] = (
            units[i : i + self.sw_batch_size] for i in range(0, len(units), self.sw_batch_size)
        )
        if self.progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=-(-len(units) // self.sw_batch_size), desc="overlap-tile", unit="batch")
        sw_device = call.sw_device
        non_blocking = sw_device.type == "cuda"
        for chunk in chunks:
            tiles = torch.stack([read(unit) for unit in chunk]).to(sw_device, non_blocking=non_blocking)
            if self.channels_last:
                tiles = to_channels_last(tiles)
            with torch.autocast(
                device_type=sw_device.type, dtype=call.autocast or torch.float32, enabled=call.autocast is not None
            ):
                pred = call.network(tiles, *call.args, **(call.kwargs or {}))
            pred = pred.float().to(call.out_device)
            if self.output == OutputMode.PROBABILITIES:
                pred = _softmax(pred)
            for unit, tile_out in zip(chunk, pred):
                write(unit, tile_out)


def _check_inputs(inputs: torch.Tensor, dims: int) -> None:
    """Refuses inputs the inferer cannot segment, naming the shape or dtype and what it takes."""
    if inputs.ndim != dims + 2:
        raise ValueError(
            f"inputs must be (B, C, {', '.join('S' * dims)}) for a {dims}D network, got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0 or inputs.shape[1] == 0:
        raise ValueError(
            f"inputs of shape {tuple(inputs.shape)} hold no image: the inferer takes (B, C, {', '.join('S' * dims)}) "
            "with at least one image (B >= 1) of at least one channel (C >= 1)"
        )
    if 0 in inputs.shape[2:]:
        raise ValueError(
            f"inputs have an empty spatial axis (shape {tuple(inputs.shape)}); there is nothing to segment"
        )
    if not torch.is_floating_point(inputs):
        raise ValueError(
            f"inputs are {inputs.dtype}, the network takes floating-point images; convert them and scale the "
            "intensities as in training (the bundles' IntensityPreset), e.g. image.float() / 255 for 8-bit microscopy"
        )


def scores_to_volume(
    scores: torch.Tensor, mode: str | VolumeOutput, probability_dtype: str | ProbabilityDtype = ProbabilityDtype.UINT8
) -> np.ndarray:
    """What a volume stores of a block's ``(C, *S)`` float32 scores: ``labels`` (argmax over the channels, uint8, or
    uint16 beyond 256 classes), ``probabilities`` (uint8 0..255 rounded, or float16) or ``logits`` (float32)."""
    kind = look_up(mode, VolumeOutput, "output")
    if kind == VolumeOutput.LABELS:
        return channel_argmax(scores).numpy()
    if kind == VolumeOutput.PROBABILITIES:
        if look_up(probability_dtype, ProbabilityDtype, "probability_dtype") == ProbabilityDtype.FLOAT16:
            return scores.numpy().astype(np.float16)
        return np.rint(scores.numpy() * 255).astype(np.uint8)
    return scores.numpy()


def channel_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(dim=0)`` of ``(C, *S)`` scores as uint8 (uint16 beyond 256 classes), equal to torch's
    (the first of tied maxima; NaN counts as the largest), but a running maximum over the channels.

    Written by hand because torch's and numpy's argmax over a leading axis reduce across strided memory: measured
    here 0.24 s for 2 x 128^3 float32 against 0.07 s for this loop of contiguous element-wise operations (labels
    of large volumes are written block by block, and this was a fifth of a block's time)."""
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8 if scores.shape[0] <= 256 else torch.int16)
    best = scores[0].clone()
    best_nan = torch.isnan(best)
    for c in range(1, scores.shape[0]):
        value = scores[c]
        nan = torch.isnan(value)
        better = torch.gt(value, best) | (nan & ~best_nan)
        labels.masked_fill_(better, c if c < 32768 else c - 65536)  # int16 bits of a uint16 label
        torch.where(better, value, best, out=best)
        best_nan |= nan
    return labels if labels.dtype == torch.uint8 else labels.view(torch.uint16)


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the channel axis (1) of ``(B, C, *S)``, computed with the channels last so that every voxel
    is computed by the same code path whatever its position: the result of a voxel is then the same in a tile,
    a region or the whole image (bit-identical regions, see ``predict_region``)."""
    return torch.softmax(logits.movedim(1, -1), dim=-1).movedim(-1, 1)
