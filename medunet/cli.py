"""The ``medunet`` command: parses arguments and calls the library and :mod:`medunet.apps`.

Heavy modules are imported inside each command, so ``medunet --help`` and ``medunet geometry`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from medunet.utils.enums import (
    LabelRule,
    Precision,
    ProbabilityDtype,
    RetrieveMethod,
    SegType,
    VolumeOutput,
    option_values,
)

__all__ = ["blockwise_settings", "main", "parse_args"]


PRECISION_HELP = (
    "inference preset (default float32, exact; bfloat16 on CUDA or a CPU with native bfloat16, float16 on CUDA)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medunet", description="Valid-convolution U-Net segmentation toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    segment = sub.add_parser(
        "segment", help="segment images with a shipped model or a bundle folder, no training (instances, measurements)"
    )
    segment.add_argument("input", nargs="?", help="an image, a folder of images / DICOM series, or a zarr / OME-Zarr")
    segment.add_argument("-o", "--output", help="output folder")
    segment.add_argument("--model", help="a shipped model's name (see --list) or a bundle folder")
    segment.add_argument("--checkpoint", help="weights instead of the bundle's models/model.pt")
    segment.add_argument("--device", help="cpu, cuda, cuda:N or auto (default: the bundle's)")
    segment.add_argument("--precision", choices=option_values(Precision), help=PRECISION_HELP)
    _seg_type_flag(segment)
    segment.add_argument("--list", action="store_true", help="list the shipped models with their one-line summaries")
    segment.add_argument("--override", action="append", default=[], metavar="KEY=JSON", help="bundle config override")
    geometry = sub.add_parser("geometry", help="print the size arithmetic of a ValidUNet")
    geometry.add_argument("--spatial-dims", type=int, default=2)
    geometry.add_argument("--depth", type=int, default=5)
    geometry.add_argument("--input", type=int, nargs="+", help="input shape to check / map to its output")
    geometry.add_argument("--output", type=int, nargs="+", help="output shape to find the smallest input for")
    export = sub.add_parser(
        "export",
        help="export a bundle checkpoint as a torch.export program (.pt2), or with --onnx as one zip file (model.onnx "
        "and pipeline.json) that `python -m medunet.runtime` runs without torch",
    )
    export.add_argument(
        "--config-file",
        required=True,
        help="the bundle's train.json (defines network_def); with --onnx its inference.json",
    )
    export.add_argument("--ckpt-path", required=True, help="checkpoint (.pt) written by training")
    export.add_argument(
        "--onnx", action="store_true",
        help="write the ONNX artefact: the network with dynamic spatial axes plus the bundle's tile, flips, intensity "
        "preset and instance settings (the tile options are then optional: default the bundle's output_tile)",
    )  # fmt: skip
    export_tile = export.add_mutually_exclusive_group()
    export_tile.add_argument(
        "--input-tile", type=int, nargs="+", help="the program's input tile, a valid network input"
    )
    export_tile.add_argument(
        "--output-tile", type=int, nargs="+", help="or its output tile, a size the network produces"
    )
    _renamed_flag(export, "--tile", "--input-tile (or --output-tile)")
    export.add_argument("--output", required=True, help="where to write the .pt2 program (with --onnx: the .zip)")
    weights = sub.add_parser(
        "weights", help="write a checkpoint's model weights as a model file (e.g. a run's last epoch, in float16)"
    )
    weights.add_argument("checkpoint", help="a checkpoint written by training (checkpoint_epoch=N.pt, best_model.pt)")
    weights.add_argument("-o", "--output", required=True, help="the model file to write, e.g. models/model.pt")
    weights.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="of the stored weights")
    evaluate = sub.add_parser(
        "evaluate", help="evaluate a checkpoint on a folder of images and labels with every medunet metric"
    )
    evaluate.add_argument(
        "--bundle", required=True, help="bundle folder whose inference pipeline to use, e.g. bundles/unet2d"
    )
    evaluate.add_argument("--checkpoint", required=True, help="trained weights (.pt)")
    evaluate.add_argument("--images", required=True, help="folder of images (PNG/TIFF, NIfTI) or DICOM series folders")
    evaluate.add_argument(
        "--labels", required=True, help="folder of labels named like the images (x.png or x_seg.png, ...)"
    )
    evaluate.add_argument(
        "--label-rule",
        default="instances",
        choices=option_values(LabelRule),
        help="how label values map to classes: instance labels, 0/255 masks (threshold) or class indices",
    )
    evaluate.add_argument(
        "--flip", type=int, nargs="*", default=[], metavar="AXIS", help="flip TTA over these spatial axes"
    )
    evaluate.add_argument("--output", default="evaluation", help="folder for metrics.json and metrics.csv")
    evaluate.add_argument("--override", action="append", default=[], metavar="KEY=JSON", help="bundle config override")
    blockwise = sub.add_parser(
        "blockwise",
        help="segment a volume larger than memory (zarr, OME-Zarr, TIFF) block by block on dask; rerun to resume",
    )
    blockwise.add_argument("--bundle", required=True, help="bundle folder whose network to use, e.g. bundles/unet3d")
    blockwise.add_argument("--checkpoint", required=True, help="trained weights (.pt)")
    blockwise.add_argument("--input", required=True, help="zarr array, OME-Zarr image (.zarr folder) or (Big)TIFF file")
    blockwise.add_argument("--array", help="the image array's path inside a zarr group (default: OME-Zarr level 0)")
    blockwise.add_argument("--output", required=True, help="OME-Zarr folder to write (an existing one is resumed)")
    blockwise.add_argument(
        "--output-mode", default="labels", choices=option_values(VolumeOutput), help="what to store per voxel"
    )
    blockwise.add_argument(
        "--probability-dtype", default=ProbabilityDtype.UINT8.value, choices=option_values(ProbabilityDtype)
    )
    blockwise.add_argument("--instances", action="store_true", help="also write stitched instance labels")
    blockwise_tile = blockwise.add_mutually_exclusive_group()
    blockwise_tile.add_argument(
        "--output-tile", type=int, nargs="+", help="network output tile (default: the bundle's output_tile)"
    )
    blockwise_tile.add_argument("--input-tile", type=int, nargs="+", help="or the network input tile")
    _renamed_flag(blockwise, "--tile", "--input-tile (or --output-tile, the bundle's tile by default)")
    blockwise.add_argument("--block-shape", type=int, nargs="+", help="output block per task (pooling-grid multiple)")
    blockwise.add_argument("--chunks", type=int, nargs="+", help="output chunk shape (default: the block shape)")
    blockwise.add_argument(
        "--flip", type=int, nargs="*", default=[], metavar="AXIS", help="flip TTA axes (default: the bundle's)"
    )
    blockwise.add_argument("--scale", type=float, default=1.0, help="intensity x * scale + offset before the network")
    blockwise.add_argument("--offset", type=float, default=0.0)
    blockwise.add_argument("--clip", type=float, nargs=2, metavar=("LOW", "HIGH"), help="clip after scaling")
    blockwise.add_argument("--workers", type=int, default=1, help="worker processes of the local dask cluster")
    blockwise.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    blockwise.add_argument("--device", default="auto", help="auto (a worker's GPU if it has one), cuda, cuda:N or cpu")
    blockwise.add_argument(
        "--no-channels-last", action="store_true", help="tiles in the default memory format (channels-last is faster)"
    )
    blockwise.add_argument(
        "--precision", default=Precision.FLOAT32.value, choices=option_values(Precision), help=PRECISION_HELP
    )
    blockwise.add_argument("--scheduler", help="address of a running dask scheduler instead of a local cluster")
    blockwise.add_argument("--memory-limit", help="per local worker, e.g. 2GiB (a worker above it is restarted)")
    blockwise.add_argument("--retries", type=int, default=2, help="times a failing block is retried")
    blockwise.add_argument("--overwrite", action="store_true", help="replace an existing output of another job")
    blockwise.add_argument("--override", action="append", default=[], metavar="KEY=JSON", help="bundle config override")
    blockwise.add_argument("--report", help="write the run's report (blocks computed / skipped) as JSON here")
    blockwise.add_argument(
        "--tiff", help="also export the output (labels or probabilities) to this OME-TIFF (BigTIFF, tiled) at the end"
    )
    pacs = sub.add_parser("pacs", help="research-PACS workflows (settings from --config or MEDUNET_PACS_* variables)")
    pacs_sub = pacs.add_subparsers(dest="pacs_command", required=True)
    for name, text in (
        ("echo", "C-ECHO the PACS"),
        ("segment", "segment a study and store the SEG back"),
        ("listen", "segment every series pushed to medunet and send the SEGs to the PACS"),
    ):
        cmd = pacs_sub.add_parser(name, help=text)
        cmd.add_argument("--config", help="JSON file with PACS settings (host, port, called_aet, calling_aet, ...)")
        if name == "echo":
            continue
        cmd.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/unet3d")
        cmd.add_argument("--checkpoint", required=True, help="trained weights (.pt)")
        cmd.add_argument("--override", action="append", default=[], metavar="KEY=JSON", help="bundle config override")
        _seg_type_flag(cmd)
        cmd.add_argument("--work-dir", help="where retrieved series and outputs go (default: a new temporary folder)")
        if name == "segment":
            cmd.add_argument("--study-uid", required=True)
            cmd.add_argument("--series-uid")
            cmd.add_argument("--modality")
            cmd.add_argument("--description", help="regular expression on SeriesDescription")
            cmd.add_argument(
                "--retrieve",
                choices=option_values(RetrieveMethod),
                default=RetrieveMethod.MOVE.value,
                help="C-MOVE to medunet's storage SCP, C-GET, or DICOMweb WADO-RS",
            )
            cmd.add_argument("--no-store", action="store_true", help="do not send the SEG back")
        else:
            cmd.add_argument("--allowed-aet", action="append", required=True, help="AE title allowed to send (repeat)")
            cmd.add_argument(
                "--idle-seconds",
                type=float,
                default=None,
                help="a series is complete after this quiet time in seconds (default: the listener's, "
                "medunet.apps.pacs_listener.DEFAULT_IDLE_SECONDS)",
            )
            cmd.add_argument("--max-queue", type=int, default=8)
            cmd.add_argument(
                "--host",
                default="127.0.0.1",
                help="address to listen on (default loopback only; 0.0.0.0 or this machine's address to be reached "
                "by a scanner or PACS on the network)",
            )
            cmd.add_argument("--port", type=int, default=None, help="port to listen on (default: storage_port)")
    return parser


SEG_TYPE_HELP = (
    "DICOM SEG kind for DICOM inputs: binary (one frame per segment and slice; every viewer reads it) or labelmap "
    "(one frame per slice with segment numbers; OHIF 3.10, highdicom 0.24). Default: the bundle's (binary)"
)


def _seg_type_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seg-type", "--seg_type", dest="seg_type", choices=option_values(SegType), help=SEG_TYPE_HELP)


def _with_seg_type(args: argparse.Namespace, overrides: dict[str, object]) -> dict[str, object]:
    """``overrides`` with ``--seg-type`` (an explicit ``--override seg_type=...`` wins)."""
    return {**({"seg_type": args.seg_type} if args.seg_type else {}), **overrides}


def _renamed_flag(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """A flag of an earlier version, hidden from ``--help`` and refused with the flag that replaced it named."""

    class Renamed(argparse.Action):
        def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
            parser.error(f"{old} was renamed: use {new}")

    parser.add_argument(old, nargs="*", action=Renamed, help=argparse.SUPPRESS)


def _overrides(items: Sequence[str]) -> dict[str, object]:
    """``KEY=JSON`` bundle overrides (a value that is not JSON is taken as a string)."""
    overrides: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--override {item!r}: use KEY=JSON, e.g. flip_axes=[0,1]")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def _pacs(args: argparse.Namespace) -> int:
    from medunet.io.pacs import PacsClient, PacsConfig, PacsError

    try:
        config = PacsConfig.from_file(args.config) if args.config else PacsConfig.from_env()
    except (OSError, ValueError) as err:
        raise SystemExit(f"medunet pacs {args.pacs_command}: {err}") from None
    client = PacsClient(config)
    try:
        if args.pacs_command == "echo":
            print(json.dumps({"pacs": config.describe(), "echo": client.echo()}))
            return 0
        from medunet.apps.segmenter import BundleSegmenter

        try:
            segmenter = BundleSegmenter(args.bundle, args.checkpoint, _with_seg_type(args, _overrides(args.override)))
        except (ValueError, FileNotFoundError) as err:  # a missing, corrupt or foreign checkpoint
            raise SystemExit(f"medunet pacs {args.pacs_command}: {err}") from None
        if args.pacs_command == "segment":
            from medunet.apps.pacs_study import segment_study

            summary = segment_study(
                client,
                segmenter,
                args.study_uid,
                args.work_dir,
                args.series_uid,
                args.modality,
                args.description,
                retrieve=args.retrieve,
                store=not args.no_store,
            )
            print(json.dumps(summary, indent=2))
            return 0
        from medunet.apps.pacs_listener import PacsListener

        quiet = {} if args.idle_seconds is None else {"idle_seconds": args.idle_seconds}
        listener = PacsListener(
            segmenter,
            client,
            config.calling_aet,
            config.storage_port if args.port is None else args.port,
            args.allowed_aet,
            args.work_dir,
            max_queue=args.max_queue,
            host=args.host,
            **quiet,
        )
        listener.start()
        try:
            while True:
                listener.wait_idle(3600)
        except KeyboardInterrupt:
            listener.stop()
        return 0
    except PacsError as err:
        raise SystemExit(f"medunet pacs {args.pacs_command}: {err}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The ``medunet`` command line, parsed (``None``: ``sys.argv``)."""
    return _parser().parse_args(argv)


def blockwise_settings(args: argparse.Namespace) -> dict[str, object]:
    """The bundle settings (``configs/blockwise.json``) that ``medunet blockwise``'s flags stand for: the command
    and the bundle config run one assembly path; a tile or flips not given leave the bundle's."""
    flags = {
        "input_volume": args.input, "volume_array": args.array, "output_volume": args.output,
        "volume_output": args.output_mode, "probability_dtype": args.probability_dtype,
        "write_volume_instances": args.instances, "output_tile": args.output_tile, "input_tile": args.input_tile,
        "block_shape": args.block_shape, "chunks": args.chunks, "flip_axes": args.flip, "intensity_scale": args.scale,
        "intensity_offset": args.offset, "intensity_clip": args.clip, "workers": args.workers,
        "torch_threads": args.threads, "volume_device": args.device, "channels_last": not args.no_channels_last,
        "precision": args.precision,
        "scheduler": args.scheduler, "memory_limit": args.memory_limit, "retries": args.retries,
        "overwrite": args.overwrite, "export_tiff": args.tiff,
    }  # fmt: skip
    unset = {"output_tile", "flip_axes"}  # given only when the flag is: the bundle's value otherwise
    return {k: v for k, v in flags.items() if not (k in unset and v in (None, []))}


def _blockwise(args: argparse.Namespace) -> int:
    from medunet.apps.blockwise import run_bundle_blockwise

    try:
        settings = {**blockwise_settings(args), **_overrides(args.override)}
        report = run_bundle_blockwise(args.bundle, args.checkpoint, settings)
    except (ValueError, FileNotFoundError, TypeError) as err:
        raise SystemExit(f"medunet blockwise: {err}") from None
    if args.report:
        from medunet.utils.files import atomic_write_text

        atomic_write_text(args.report, report.to_json())
    print(
        f"medunet blockwise: {args.output}: {report.computed} of {report.blocks} blocks computed, {report.skipped} "
        "done by an earlier run"
        + (f"; {report.instances} instances" if report.instances is not None else "")
        + (f"; exported to {args.tiff}" if args.tiff else "")
    )
    return 0


def _segment(args: argparse.Namespace) -> int:
    from medunet.apps.segment import model_summary, segment, shipped_models

    if args.list:
        models = shipped_models()
        for name, folder in models.items():
            print(f"{name:<12} {model_summary(folder)}")
        if not models:
            print("medunet segment: no shipped model has its weights here (bundles/*/models/model.pt)")
        return 0
    missing = [flag for flag, value in (("INPUT", args.input), ("-o/--output", args.output), ("--model", args.model))
               if not value]  # fmt: skip
    if missing:
        raise SystemExit(f"medunet segment: give {', '.join(missing)} (or --list to see the models)")
    settings = {
        **({"device": args.device} if args.device else {}),
        **({"precision": args.precision} if args.precision else {}),
        **_with_seg_type(args, _overrides(args.override)),
    }
    try:
        report = segment(args.model, args.input, args.output, args.checkpoint, settings)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"medunet segment: {err}") from None
    rate = report.seconds_per_megapixel
    print(
        f"medunet segment: {len(report.outputs)} input(s) segmented with {args.model} into {args.output}"
        + (f"; {rate:.2f} s per megapixel" if rate is not None else "")
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "pacs":
        return _pacs(args)
    if args.command == "blockwise":
        return _blockwise(args)
    if args.command == "segment":
        return _segment(args)
    if args.command == "evaluate":
        from medunet.apps.evaluation import evaluate_folder, format_table

        try:
            result = evaluate_folder(
                args.bundle, args.checkpoint, args.images, args.labels, args.output, args.label_rule, args.flip,
                _overrides(args.override),
            )  # fmt: skip
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"medunet evaluate: {err}") from None
        print(format_table(result))
        print(f"medunet evaluate: metrics per image in {args.output}/metrics.json and metrics.csv")
        return 0
    if args.command == "weights":
        import torch

        from medunet.networks.weights import write_model_file

        try:
            written = write_model_file(args.checkpoint, args.output, getattr(torch, args.dtype))
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"medunet weights: {err}") from None
        print(f"medunet weights: {written}")
        return 0
    if args.command == "export" and args.onnx:
        from medunet.export import export_bundle_onnx

        if args.input_tile or args.output_tile:
            raise SystemExit(
                "medunet export: with --onnx the tile is the bundle's output_tile; leave out --input-tile / --output-tile"
            )
        try:
            print(export_bundle_onnx(args.config_file, args.ckpt_path, args.output))
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"medunet export: {err}") from None
        return 0
    if args.command == "export":
        if not (args.input_tile or args.output_tile):
            raise SystemExit("medunet export: give --input-tile or --output-tile (the program's fixed tile), or --onnx")
        from monai.bundle import ConfigParser

        from medunet.export import export_program
        from medunet.networks import ValidUNet, load_weights

        parser = ConfigParser()
        parser.read_config(args.config_file)
        network = parser.get_parsed_content("network_def")
        if not isinstance(network, ValidUNet):
            raise SystemExit(f"medunet export: network_def in {args.config_file} is not a medunet ValidUNet")
        try:
            load_weights(network, args.ckpt_path)
        except (ValueError, FileNotFoundError) as err:
            raise SystemExit(f"medunet export: {err}") from None
        try:
            tile = args.input_tile or network.geometry.input_tile_for(args.output_tile, "--output-tile")
            print(export_program(network, tile, args.output))
        except ValueError as err:
            raise SystemExit(f"medunet export: {err}") from None
        return 0
    if args.command == "geometry":
        from medunet.networks.geometry import UNetGeometry

        geo = UNetGeometry.create(args.spatial_dims, args.depth)
        info: dict[str, object] = {"margin": geo.margin, "stride": geo.stride, "min_input": geo.min_input_shape}
        try:
            if args.input:
                info["output_for_input"] = geo.output_shape(args.input)
            if args.output:
                info["input_for_output"] = geo.input_shape_for(args.output)
        except ValueError as err:
            raise SystemExit(f"medunet geometry: {err}") from None
        print(json.dumps(info))
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
