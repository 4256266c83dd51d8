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

    demo = sub.add_parser("demo", help="train on generated cells, then segment a generated image")
    demo.add_argument("--output-dir", default="outputs/demo", help="where results go (default: %(default)s)")
    demo.add_argument("--iterations", type=int, default=300, help="training iterations (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: CUDA when available")

    geometry = sub.add_parser("geometry", help="print the size arithmetic of a ValidUNet")
    geometry.add_argument("--spatial-dims", type=int, default=2)
    geometry.add_argument("--depth", type=int, default=5)
    geometry.add_argument("--input", type=int, nargs="+", help="input shape to check / map to its output")
    geometry.add_argument("--output", type=int, nargs="+", help="output shape to find the smallest input for")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "demo":
        from medunet.demo import run_demo

        if args.iterations < 0:
            raise SystemExit(f"--iterations must be >= 0, got {args.iterations}")
        summary = run_demo(args.output_dir, iterations=args.iterations, seed=args.seed, device=args.device)
        print(json.dumps(summary, indent=2))
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
