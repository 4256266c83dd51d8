"""The ``medunet`` command: a thin layer over the library API."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medunet", description="Valid-convolution U-Net segmentation toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    geometry = sub.add_parser("geometry", help="print the size arithmetic of a ValidUNet")
    geometry.add_argument("--spatial-dims", type=int, default=2)
    geometry.add_argument("--depth", type=int, default=5)
    geometry.add_argument("--input", type=int, nargs="+", help="input shape to check / map to its output")
    geometry.add_argument("--output", type=int, nargs="+", help="output shape to find the smallest input for")
    export = sub.add_parser("export", help="export a bundle checkpoint as a torch.export program (.pt2)")
    export.add_argument("--config-file", required=True, help="the bundle's train.json (defines network_def)")
    export.add_argument("--ckpt-path", required=True, help="checkpoint (.pt) written by training")
    export.add_argument("--tile", type=int, nargs="+", required=True, help="input tile shape, a valid network input")
    export.add_argument("--output", required=True, help="where to write the .pt2 program")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "export":
        from monai.bundle import ConfigParser

        from medunet.export import export_program, load_weights
        from medunet.networks import ValidUNet

        parser = ConfigParser()
        parser.read_config(args.config_file)
        network = parser.get_parsed_content("network_def")
        if not isinstance(network, ValidUNet):
            raise SystemExit(f"medunet export: network_def in {args.config_file} is not a medunet ValidUNet")
        load_weights(network, args.ckpt_path)
        try:
            print(export_program(network, args.tile, args.output))
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
