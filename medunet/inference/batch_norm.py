"""Batch-norm statistics of exactly what inference sees.

A network trained on foreground-oversampled tiles (half of them holding a small tumour) keeps running
averages of those tiles' activations; inference then normalises whole images, tiled uniformly, with them.
:func:`recalibrate_batch_norm` estimates the averages again from the tiles the inferer itself feeds the
network on the training images (same tile plan, same mirrored margin), the idea of "precise BN" / SWA's
``update_bn``. Inference stays exact: every tile is normalised with the same fixed statistics.

Why not ``torch.optim.swa_utils.update_bn``: it calls the network on each whole batch of a loader, while the
statistics must come from the inferer's tiles (a valid network's input tiles with their mirrored margin).
The bookkeeping (reset, cumulative average, restore) is the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

__all__ = ["recalibrate_batch_norm"]


@torch.no_grad()
def recalibrate_batch_norm(
    network: nn.Module,
    images: Iterable[torch.Tensor],
    inferer: Callable[[torch.Tensor, nn.Module], torch.Tensor],
) -> int:
    """Replaces the running mean and variance of every batch-norm layer of ``network`` by their average over
    every tile that ``inferer`` runs on ``images`` (each a batch ``(B, C, *spatial)`` as the inferer takes it,
    preprocessed as for inference). Each network call counts once (the cumulative average of PyTorch's
    ``momentum=None``). Returns the number of network calls; the network is left in eval mode.

    Raises ``ValueError`` if the network has no batch-norm layer or the images give no tile; on any error the
    statistics are left as they were.
    """
    layers = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        raise ValueError("the network has no batch-norm layer: there are no statistics to recalibrate")
    if any(not m.track_running_stats for m in layers):
        raise ValueError("a batch-norm layer does not track running statistics (track_running_stats=False)")
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())  # type: ignore[union-attr]
             for m in layers]  # fmt: skip
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calls
    network.eval()  # dropout and everything else as at inference
    for m in layers:
        m.train()  # normalises with, and accumulates, each call's statistics
    calls = 0
    try:
        for image in images:
            inferer(image, network)
        calls = int(layers[0].num_batches_tracked)  # type: ignore[arg-type]
        if calls == 0:
            raise ValueError("no tile was run: give at least one image to recalibrate batch norm with")
    except BaseException:
        for m, (_, mean, var, count) in zip(layers, saved, strict=True):  # the network as it was given
            m.running_mean.copy_(mean)  # type: ignore[union-attr]
            m.running_var.copy_(var)  # type: ignore[union-attr]
            m.num_batches_tracked.copy_(count)  # type: ignore[union-attr]
        raise
    finally:
        for m, (momentum, *_) in zip(layers, saved, strict=True):
            m.momentum = momentum
        network.eval()
    return calls
