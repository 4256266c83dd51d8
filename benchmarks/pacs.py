"""PACS workflow timings: retrieve, inference, SEG build, store, with and without TCP_NODELAY.

Runs a real Orthanc in a private network namespace (as the tests do), uploads the TCIA T1post series and
times each step of ``segment_study`` several times; writes benchmarks/results/pacs.json and pacs.md.
The network is a small random-weight 3D U-Net: the inference time shows the pipeline's cost, not a model's.

Usage (as root, Orthanc installed): ``python benchmarks/pacs.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medunet.apps.segmenter import BundleSegmenter  # noqa: E402
from medunet.data.datasets import dataset_root  # noqa: E402
from medunet.io.dicom_derived import segments_from_metadata  # noqa: E402
from medunet.io.dicom_seg import build_dicom_seg  # noqa: E402
from medunet.io.dicom_series import read_dicom_series, scan_dicom_folder  # noqa: E402
from medunet.io.pacs import PacsClient, PacsConfig  # noqa: E402
from medunet.networks import ValidUNet  # noqa: E402
from tests.orthanc import inside, run_orthanc, skip_reason  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SMALL = {
    "features": [4, 8, 16, 32],
    "pool_sizes": [[2, 2, 1], [2, 2, 1], [2, 2, 1]],
    "output_tile": [64, 64, 24],
    "device": "cpu",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        raise SystemExit(f"benchmarks/pacs.py: {reason}")
    series_dir = dataset_root() / "tcia_pgbm001_dicom" / "T1post"
    files = sorted(series_dir.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0]).StudyInstanceUID)
    series_uid = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
    tmp = Path(tempfile.mkdtemp(prefix="medunet-pacs-bench-"))
    torch.manual_seed(0)
    net = ValidUNet(3, 1, 2, features=SMALL["features"], norm="batch", dropout=0.0, pool_sizes=SMALL["pool_sizes"])
    torch.save({"model": net.state_dict()}, tmp / "model.pt")
    segmenter = BundleSegmenter(REPO / "bundles/unet3d", tmp / "model.pt", {**SMALL, "intensity_preset": "mr"})
    segments = segments_from_metadata(json.loads((REPO / "bundles/unet3d/configs/metadata.json").read_text()))
    rows = []
    with run_orthanc(tmp / "orthanc", f"medunet-bench-{os.getpid()}") as server, inside(server.namespace):
        PacsClient(server.config).store(files)
        for nodelay in (True, False):
            client = PacsClient(PacsConfig(**{**server.config.__dict__, "tcp_nodelay": nodelay}))
            for rep in range(args.repeats):
                work = tmp / f"run-{nodelay}-{rep}"
                t = {}
                start = time.perf_counter()
                client.move_series(study_uid, series_uid, work / "in")
                t["retrieve_c_move"] = time.perf_counter() - start
                start = time.perf_counter()
                client.get_series(study_uid, series_uid, work / "in_get")
                t["retrieve_c_get"] = time.perf_counter() - start
                start = time.perf_counter()
                outputs = segmenter.segment(work / "in", work / "out")
                t["inference_with_outputs"] = time.perf_counter() - start
                labels = np.asarray(
                    __import__("nibabel").load(next(p for p in outputs if p.name.endswith(".nii.gz"))).dataobj
                )
                volume = read_dicom_series(scan_dicom_folder(work / "in")[0])
                start = time.perf_counter()
                seg = build_dicom_seg(labels.astype(np.uint8), volume.headers, segments)
                t["seg_build"] = time.perf_counter() - start
                seg.save_as(work / "seg.dcm")
                start = time.perf_counter()
                client.store([work / "seg.dcm"])
                t["store_c_store"] = time.perf_counter() - start
                start = time.perf_counter()
                client.store(files)
                t["store_series_24_instances"] = time.perf_counter() - start
                rows.append({"tcp_nodelay": nodelay, "repeat": rep, **{k: round(v, 4) for k, v in t.items()}})
    steps = [k for k in rows[0] if k not in ("tcp_nodelay", "repeat")]
    summary = {
        str(nodelay): {
            s: round(float(np.median([r[s] for r in rows if r["tcp_nodelay"] == nodelay])), 4) for s in steps
        }
        for nodelay in (True, False)
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "pacs.json").write_text(
        json.dumps({"repeats": args.repeats, "median_seconds": summary, "runs": rows}, indent=2) + "\n"
    )
    lines = [
        "# PACS workflow timings (TCIA T1post, 24 instances, Orthanc 1.10 on loopback in a network namespace)",
        "",
        f"Median of {args.repeats} repeats, seconds. Inference uses a small random-weight 3D U-Net (pipeline cost).",
        "",
        "| step | TCP_NODELAY on | TCP_NODELAY off |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {summary['True'][s]:.3f} | {summary['False'][s]:.3f} |" for s in steps]
    (RESULTS / "pacs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
