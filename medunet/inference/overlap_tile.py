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

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from torch import nn

from medunet.inference.cost import TileCostModel
from medunet.inference.precision import amp_default, autocast_dtype, to_channels_last
from medunet.inference.tiling import TilePlan, plan_tiles
from medunet.networks.geometry import UNetGeometry
from medunet.utils.enums import OutputMode, PaddingMode, look_up
from medunet.utils.regions import extract_region

__all__ = ["OverlapTileInferer"]

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
        self.amp = amp
        self.geometry = geometry
        self.channels_last = bool(channels_last)

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
        flips = [
            tuple(d + 2 for d in subset)
            for k in range(len(self.flip_axes) + 1)
            for subset in itertools.combinations(self.flip_axes, k)
        ]
        result: torch.Tensor | None = None
        with torch.inference_mode():
            for flip in flips:
                x = image.flip(flip) if flip else image
                out = self._tiled(x, network, plan, sw_device, device, amp, args, kwargs)
                if self.output == OutputMode.PROBABILITIES:
                    out = torch.softmax(out, dim=1)
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
        chunks: Iterator[list[tuple[int, tuple[int, ...]]]] = (
            units[i : i + self.sw_batch_size] for i in range(0, len(units), self.sw_batch_size)
        )
        if self.progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, total=-(-len(units) // self.sw_batch_size), desc="overlap-tile", unit="batch")
        output: torch.Tensor | None = None
        non_blocking = sw_device.type == "cuda"
        for chunk in chunks:
            tiles = torch.stack(
                [
                    extract_region(
                        image[b], [s - m for s, m in zip(start, plan.margin)], plan.input_tile, self.padding_mode
                    )
                    for b, start in chunk
                ]
            )
            tiles = tiles.to(sw_device, non_blocking=non_blocking)
            if self.channels_last:
                tiles = to_channels_last(tiles)
            with torch.autocast(device_type=sw_device.type, dtype=autocast_dtype(sw_device), enabled=amp):
                pred = network(tiles, *args, **kwargs)
            pred = pred.float().to(device)
            if output is None:
                output = torch.empty((batch, pred.shape[1], *plan.image_shape), dtype=torch.float32, device=device)
            for (b, start), tile_out in zip(chunk, pred):
                dst: list[int | slice] = [b, slice(None)]
                src: list[slice] = [slice(None)]
                for s, o, size in zip(start, plan.output_tile, plan.image_shape):
                    n = min(o, size - s)
                    dst.append(slice(s, s + n))
                    src.append(slice(0, n))
                output[tuple(dst)] = tile_out[tuple(src)]
        assert output is not None
        return output
