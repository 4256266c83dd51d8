"""Blockwise inference of volumes larger than memory, on dask.distributed, resumable, exact.

The output volume is cut into blocks (multiples of the output chunks and of the network's pooling stride); one
dask task per block reads the block's input context from the source (zarr, OME-Zarr, TIFF), runs the network on
the tiles of the whole image's tile plan (:func:`medunet.inference.predict_region`), and writes the block's
chunks. Blocks are independent, so the result is **bit-identical** to the in-memory inferer with the same tile
(float32, same torch thread count), whatever the block shape, the number of workers or the order.

Resumable and idempotent: a block that finished leaves a marker file (``<output>/.medunet/blocks/``) written
after its chunks, so a rerun of the same job (same input, network, settings) skips it; a block interrupted
mid-write has no marker and is computed again, overwriting its own chunks only. Failed blocks are retried
(``retries``), and a worker that dies has its blocks re-run by the scheduler.

Instances (``instances=True``): connected components of the foreground per block, stitched across block faces
(:mod:`medunet.apps.blockwise.instances`), equal to a whole-volume labelling up to renumbering.

Any dask scheduler runs it: a ``LocalCluster`` on one machine by default, or the address of a running
scheduler (dask-jobqueue on SLURM, Kubernetes); the workers need medunet, the input path and the output path
(a shared file system or object store).

Modules: :mod:`~medunet.apps.blockwise.job` (what to compute: job, plan, record, report),
:mod:`~medunet.apps.blockwise.tasks` (the run and its prediction tasks), :mod:`~medunet.apps.blockwise.instances`
(the three instance passes), :mod:`~medunet.apps.blockwise.runner` (dask client and phases),
:mod:`~medunet.apps.blockwise.bundle` (a bundle's run); the output's layout is
:mod:`medunet.io.segmentation_volume`.
"""

from medunet.apps.blockwise.bundle import blockwise_bundle, refuse_resampling, run_bundle_blockwise
from medunet.apps.blockwise.instances import label_instances
from medunet.apps.blockwise.job import BlockwiseJob, BlockwiseReport, network_fingerprint
from medunet.apps.blockwise.tasks import run_blockwise

__all__ = [
    "BlockwiseJob",
    "BlockwiseReport",
    "blockwise_bundle",
    "label_instances",
    "network_fingerprint",
    "refuse_resampling",
    "run_blockwise",
    "run_bundle_blockwise",
]
