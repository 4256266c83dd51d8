"""Exact overlap-tile inference with mirror extrapolation and flip test-time augmentation.

The paper's overlap-tile strategy (Ronneberger et al. 2015, Fig. 2): the image is extended at its
borders by mirroring, cut into input tiles placed on the pooling grid, and the output tiles are put
side by side. For a network in eval mode without instance normalisation the result equals one pass
over the whole mirror-extended image (see :mod:`medunet.inference.tiling` for why MONAI's
``sliding_window_inference`` cannot do this).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from medunet.inference.cost import TileCostModel
from medunet.inference.precision import amp_default, autocast_dtype, to_channels_last
from medunet.inference.tiling import TilePlan, default_block_shape, plan_axis_starts, plan_tiles
from medunet.networks.geometry import UNetGeometry
from medunet.utils.enums import OutputMode, PaddingMode, ProbabilityDtype, VolumeOutput, look_up
from medunet.utils.regions import extract_region, read_region
from medunet.utils.values import as_bool

__all__ = ["OverlapTileInferer", "channel_argmax", "scores_to_volume"]

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


class OverlapTileInferer(Inferer):
    """Tiles on the pooling grid, mirror-extended borders, optional flip TTA; output = input's spatial size.

    Args:
        roi_size: input tile size (a valid network input per axis; non-positive entries mean the whole image
            along that axis). ``None``: chosen by the planner, the tile with the least total computation
            that fits ``memory_budget``.
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
        amp: autocast, to float16 on CUDA and bfloat16 on the CPU (default: on for CUDA only, see
            :mod:`medunet.inference.precision`). float32 (``amp=False``) is the exactness contract: only then
            does the tiled result equal a whole-image pass up to float32 rounding.
        channels_last: hand the tiles to the network in channels-last memory format (convert the network
            with :func:`~medunet.inference.precision.to_channels_last` as well for the fast kernels).
        geometry: the network's :class:`UNetGeometry`; by default read from ``network.geometry``.

    Shapes:
        ``inputs``: ``(B, C, *S)`` tensor or MetaTensor, any ``S``; returns ``(B, out_channels, *S)``
        float32, a MetaTensor with the input's metadata (affine) when the input is one.
    """

    def __init__(
        self,
        roi_size: Sequence[int] | int | None = None,
        sw_batch_size: int = 1,
        padding_mode: str | PaddingMode = PaddingMode.SYMMETRIC,
        flip_axes: Sequence[int] = (),
        memory_budget: int | None = None,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        output: str | OutputMode = OutputMode.LOGITS,
        amp: bool | None = None,
        geometry: UNetGeometry | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
        if memory_budget is not None and memory_budget <= 0:
            raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget}")
        self.roi_size = roi_size
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
        self.amp = None if amp is None else as_bool(amp, "amp")
        self.geometry = geometry
        self.channels_last = as_bool(channels_last, "channels_last")

    def _geometry(self, network: Callable[..., torch.Tensor]) -> tuple[UNetGeometry, Any]:
        net = _unwrap(network)
        geometry = self.geometry if self.geometry is not None else getattr(net, "geometry", None)
        if not isinstance(geometry, UNetGeometry):
            raise TypeError(
                "OverlapTileInferer needs the network's geometry: pass a medunet ValidUNet (or a wrapper with "
                "`.module`), or give geometry=UNetGeometry(...) to the inferer"
            )
        return geometry, net

    def _amp(self, sw_device: torch.device) -> bool:
        return self.amp if self.amp is not None else amp_default(sw_device)

    def plan(
        self, image_shape: Sequence[int], network: Callable[..., torch.Tensor], sw_device: torch.device | None = None
    ) -> TilePlan:
        """The tile plan this inferer uses for an image of spatial shape ``image_shape``.

        The memory estimate counts 2 bytes per activation when AMP is on (float16 / bfloat16), 4 otherwise.
        """
        device = sw_device or self.sw_device or torch.device("cpu")
        geometry, net = self._geometry(network)
        roi = (self.roi_size,) * geometry.spatial_dims if isinstance(self.roi_size, int) else self.roi_size
        cost = None
        if getattr(net, "features", None) is not None:
            dtype = autocast_dtype(device) if self._amp(device) else torch.float32
            cost = TileCostModel.for_network(net, dtype, geometry)
        budget = self.memory_budget
        if roi is None and budget is None and cost is not None:
            budget = _default_memory_budget(device)
        return plan_tiles(
            geometry, image_shape, roi_size=roi, cost=cost, memory_budget=budget, batch_size=self.sw_batch_size
        )

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        geometry, net = self._geometry(network)
        dims = geometry.spatial_dims
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
        if any(a >= dims for a in self.flip_axes):
            raise ValueError(f"flip_axes {self.flip_axes} must be spatial axes in [0, {dims - 1}]")
        if any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in getattr(net, "modules", list)()):
            logger.warning(
                "the network uses instance normalisation, whose statistics depend on the tile: the tiled result "
                "differs from a whole-image pass (use norm=None or 'batch' for exact tiling)"
            )
        sw_device = self.sw_device or inputs.device
        device = self.device or inputs.device
        amp = self._amp(sw_device)
        plan = self.plan(inputs.shape[2:], network, sw_device)
        logger.debug("overlap-tile plan: %s", plan)

        image = inputs.as_tensor() if isinstance(inputs, MetaTensor) else inputs
        flips = [tuple(d + 2 for d in subset) for subset in self._flips()]
        result: torch.Tensor | None = None
        with torch.inference_mode():
            for flip in flips:
                x = image.flip(flip) if flip else image
                out = self._tiled(x, network, plan, sw_device, device, amp, args, kwargs)
                if flip:
                    out = out.flip(flip)
                result = out if result is None else result.add_(out)
            assert result is not None
            if len(flips) > 1:
                result.div_(len(flips))
        if isinstance(inputs, MetaTensor):
            meta_out = MetaTensor(result)
            meta_out.copy_meta_from(inputs)
            return meta_out
        return result

    def _flips(self) -> list[tuple[int, ...]]:
        """Every subset of ``flip_axes`` (spatial axes), the empty one (no flip) first."""
        return [
            tuple(subset)
            for k in range(len(self.flip_axes) + 1)
            for subset in itertools.combinations(self.flip_axes, k)
        ]

    def _tiled(
        self,
        image: torch.Tensor,
        network: Callable[..., torch.Tensor],
        plan: TilePlan,
        sw_device: torch.device,
        device: torch.device,
        amp: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
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
                    torch.empty((batch, tile_out.shape[0], *plan.image_shape), dtype=torch.float32, device=device)
                )
            dst, src = _placement(start, plan.output_tile, (0,) * len(start), plan.image_shape)
            output[0][b][(slice(None), *dst)] = tile_out[(slice(None), *src)]

        self._run_tiles(units, read, write, network, sw_device, device, amp, args, kwargs)
        return output[0]

    def _run_tiles(
        self,
        units: Sequence[Any],
        read: Callable[[Any], torch.Tensor],
        write: Callable[[Any, torch.Tensor], None],
        network: Callable[..., torch.Tensor],
        sw_device: torch.device,
        device: torch.device,
        amp: bool,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        """Runs the network on the input tile of every unit, ``sw_batch_size`` at a time, and hands each output
        tile (float32, ``(C_out, *output_tile)``, on ``device``; softmax applied for ``output="probabilities"``)
        to ``write``."""
        chunks: Iterator[Sequence[Any]] = (
            units[i : i + self.sw_batch_size] for i in range(0, len(units), self.sw_batch_size)
        )
        if self.progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=-(-len(units) // self.sw_batch_size), desc="overlap-tile", unit="batch")
        non_blocking = sw_device.type == "cuda"
        for chunk in chunks:
            tiles = torch.stack([read(unit) for unit in chunk]).to(sw_device, non_blocking=non_blocking)
            if self.channels_last:
                tiles = to_channels_last(tiles)
            with torch.autocast(device_type=sw_device.type, dtype=autocast_dtype(sw_device), enabled=amp):
                pred = network(tiles, *args, **kwargs)
            pred = pred.float().to(device)
            if self.output == OutputMode.PROBABILITIES:
                pred = _softmax(pred)
            for unit, tile_out in zip(chunk, pred):
                write(unit, tile_out)

    def predict_region(
        self,
        source: Any,
        start: Sequence[int],
        size: Sequence[int],
        network: Callable[..., torch.Tensor],
        image_shape: Sequence[int] | None = None,
        plan: TilePlan | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        sw_device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """The inferer's output on the region ``[start, start + size)`` of an image that need not be in memory.

        Only the region's input context is read from ``source`` (a zarr array, a memmap, a NumPy array; mirrored
        beyond the image border as by ``__call__``). The tiles are those of ``plan`` (default: the plan this
        inferer makes for the whole image, so the same tile size), placed on the pooling grid of the whole
        image, so the result is **bit-identical** to the same region of ``__call__`` on the whole image (in
        float32: the network computes every output voxel from the same input at the same place in a tile of the
        same size). Regions can therefore be computed separately, in any order, in any process.

        Args:
            source: the image without batch axis, ``(C, *S)``.
            start, size: the output region (spatial voxels).
            image_shape: ``S`` (default: read from ``source``).
            plan: the whole image's tile plan (default: ``self.plan(S, network)``).
            transform: applied to every block read from ``source`` before the network (voxel-wise intensity
                scaling; it must not depend on the block, e.g. no per-block statistics). Default: float32.
            sw_device: device the network runs on (default: the inferer's, else the CPU).

        Returns:
            ``(C_out, *size)`` float32 on the CPU: logits, or probabilities with ``output="probabilities"``
            (averaged over flips as ``__call__`` does).
        """
        geometry, _ = self._geometry(network)
        shape = tuple(int(s) for s in (image_shape or source.shape[1:]))
        start, size = tuple(int(s) for s in start), tuple(int(s) for s in size)
        if len(shape) != geometry.spatial_dims or len(start) != len(shape) or len(size) != len(shape):
            raise ValueError(
                f"region start {start} / size {size} and image shape {shape} must have one entry per spatial axis of "
                f"the {geometry.spatial_dims}D network"
            )
        if any(s < 0 or n < 1 or s + n > d for s, n, d in zip(start, size, shape)):
            raise ValueError(f"region start {start}, size {size} is not inside the image of shape {shape}")
        device = torch.device(sw_device) if sw_device is not None else self.sw_device or torch.device("cpu")
        plan = plan or self.plan(shape, network, device)
        amp = self._amp(device)
        cpu = torch.device("cpu")
        to_float = transform or (lambda block: block.astype(np.float32))
        result: torch.Tensor | None = None
        flips = self._flips()
        with torch.inference_mode():
            for flip in flips:
                # The region in the flipped image's coordinates, whose pooling grid starts at its own first voxel.
                f_start = tuple(d - s - n if a in flip else s for a, (s, n, d) in enumerate(zip(start, size, shape)))
                starts = [
                    [a0 + t for t in plan_axis_starts(s + n - a0, o, p)]
                    for s, n, o, p in zip(f_start, size, plan.output_tile, geometry.stride)
                    for a0 in [s // p * p]
                ]
                lo = [st[0] - m for st, m in zip(starts, plan.margin)]
                hi = [st[-1] - m + t for st, m, t in zip(starts, plan.margin, plan.input_tile)]
                # Read the context once, in the source's orientation, then flip it (mirror extension commutes
                # with flipping: the flipped image's extension is the flipped extension).
                o_lo = [d - h if a in flip else lo_ for a, (lo_, h, d) in enumerate(zip(lo, hi, shape))]
                context = torch.from_numpy(
                    np.ascontiguousarray(
                        to_float(read_region(source, o_lo, [h - low for h, low in zip(hi, lo)], self.padding_mode))
                    )
                )
                if flip:
                    context = context.flip([a + 1 for a in flip])
                out = torch.empty((0,))

                def read(
                    tile_start: tuple[int, ...], context: torch.Tensor = context, lo: list[int] = lo
                ) -> torch.Tensor:
                    index = tuple(
                        slice(s - m - low, s - m - low + t)
                        for s, m, low, t in zip(tile_start, plan.margin, lo, plan.input_tile)
                    )
                    return context[(slice(None), *index)]

                def write(
                    tile_start: tuple[int, ...], tile_out: torch.Tensor, f_start: tuple[int, ...] = f_start
                ) -> None:
                    nonlocal out
                    if out.ndim == 1:
                        out = torch.empty((tile_out.shape[0], *size), dtype=torch.float32)
                    dst, src = _placement(tile_start, plan.output_tile, f_start, size)
                    out[(slice(None), *dst)] = tile_out[(slice(None), *src)]

                units = list(itertools.product(*starts))
                self._run_tiles(units, read, write, network, device, cpu, amp, (), {})
                if flip:
                    out = out.flip([a + 1 for a in flip])
                result = out if result is None else result.add_(out)
            assert result is not None
            if len(flips) > 1:
                result.div_(len(flips))
        return result

    def predict_to(
        self,
        source: Any,
        destination: Any,
        network: Callable[..., torch.Tensor],
        block_shape: Sequence[int] | None = None,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        convert: Callable[[torch.Tensor], np.ndarray] | None = None,
        sw_device: torch.device | str | None = None,
    ) -> Any:
        """Streams the inferer's output on a whole image into ``destination``, block by block (one process).

        Each block's input context is read from ``source`` (``(C, *S)``: a zarr array, memmap or NumPy array) and its
        result written into its disjoint region of ``destination`` (a NumPy memmap, a zarr array; indexed
        ``destination[..., *block]``, so ``(C_out, *S)`` for scores or ``(*S)`` for labels). Peak memory is one
        block's input context and scores plus the tile plan's budget, whatever the image's size. The result is
        bit-identical to ``__call__`` (see :meth:`predict_region`).

        Args:
            block_shape: output block (default: :func:`~medunet.inference.tiling.default_block_shape`, one tile each).
            convert: maps a block's ``(C_out, *block)`` float32 scores to what is stored, e.g.
                :func:`scores_to_volume` for labels (default: the scores in the destination's dtype).

        Returns:
            ``destination``.
        """
        geometry, _ = self._geometry(network)
        shape = tuple(int(s) for s in source.shape[1:])
        device = torch.device(sw_device) if sw_device is not None else self.sw_device or torch.device("cpu")
        plan = self.plan(shape, network, device)
        block = tuple(block_shape) if block_shape else default_block_shape(plan, geometry.stride)
        dtype = np.dtype(destination.dtype)
        to_array = convert or (lambda scores: scores.numpy().astype(dtype, copy=False))
        for start in itertools.product(*(range(0, s, b) for s, b in zip(shape, block))):
            size = tuple(min(b, s - i) for i, b, s in zip(start, block, shape))
            scores = self.predict_region(source, start, size, network, shape, plan, transform, device)
            destination[(Ellipsis, *(slice(i, i + n) for i, n in zip(start, size)))] = to_array(scores)
        return destination


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


def _placement(
    tile_start: Sequence[int], output_tile: Sequence[int], region_start: Sequence[int], region_size: Sequence[int]
) -> tuple[list[slice], list[slice]]:
    """Where an output tile starting at ``tile_start`` lands in a region ``[region_start, + region_size)``: the
    destination slices in the region and the source slices in the tile (the tile clipped to the region)."""
    dst, src = [], []
    for t, o, r, n in zip(tile_start, output_tile, region_start, region_size):
        a, b = max(t, r), min(t + o, r + n)
        dst.append(slice(a - r, b - r))
        src.append(slice(a - t, b - t))
    return dst, src
