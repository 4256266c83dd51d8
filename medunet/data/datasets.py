"""Data lists (MONAI's decathlon JSON format): the generated default set and the real sets in shared data.

A data list is ``{"name": ..., "labels": {"0": "background", ...}, "training": [{"image": ..., "label": ...}],
"validation": [...]}`` with paths relative to the list's folder (``monai.data.load_decathlon_datalist``
resolves them).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from medunet.data.dicom import write_dicom_series
from medunet.data.synthetic import synthetic_cells
from medunet.utils.files import atomic_write_json

__all__ = [
    "DATASETS",
    "dataset_root",
    "dsb2018_nuclei",
    "dsb2018_stage1",
    "isbi2012_em",
    "make_default_dataset",
    "msd_spleen_ct",
    "spinegeneric_sc_mri",
    "tcia_brain_mr",
    "tcia_pgbm_tumor",
]

logger = logging.getLogger(__name__)

GENERATOR = "medunet.data.make_default_dataset"


def dataset_root() -> Path:
    """Where the real data sets live: ``$MEDUNET_DATA_DIR`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("MEDUNET_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _require(path: Path, name: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"data set {name!r} not found at {path}; set MEDUNET_DATA_DIR to the folder holding it or pass root="
        )
    return path


def isbi2012_em(
    root: str | Path | None = None, train: Sequence[int] = range(20), val: Sequence[int] = range(20, 25)
) -> dict[str, Any]:
    """ISBI 2012 EM slices: labels 255 = cell interior (class 1), 0 = membrane (class 0)."""
    base = _require(Path(root or dataset_root()) / "isbi2012_em", "isbi2012_em")

    def item(i: int) -> dict[str, str]:
        return {"image": str(base / "images" / f"{i:02d}.png"), "label": str(base / "labels" / f"{i:02d}.png")}

    return {
        "name": "isbi2012_em",
        "tensorImageSize": "2D",
        "labels": {"0": "membrane", "1": "cell"},
        "label_rule": "label > 127",
        "training": [item(i) for i in train],
        "validation": [item(i) for i in val],
    }


def dsb2018_nuclei(root: str | Path | None = None, n_validation: int = 3) -> dict[str, Any]:
    """DSB 2018 nuclei: uint16 instance labels (0 = background); the last ``n_validation`` images validate."""
    base = _require(Path(root or dataset_root()) / "dsb2018_nuclei", "dsb2018_nuclei")
    items = [{"image": str(p), "label": str(base / "labels" / p.name)} for p in sorted((base / "images").glob("*.png"))]
    return {
        "name": "dsb2018_nuclei",
        "tensorImageSize": "2D",
        "labels": {"0": "background", "1": "nucleus"},
        "label_rule": "instances",
        "training": items[:-n_validation],
        "validation": items[-n_validation:],
    }


def dsb2018_stage1(root: str | Path | None = None, validation_fraction: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """DSB 2018 stage1_train (community-fixed; fluorescence, histology and brightfield): uint16 instance labels.

    Split by image, per group of ``manifest.json``: in each group, ``validation_fraction`` of the images (at least
    one), drawn with ``seed`` from the images sorted by name, validate; the rest train. Every case carries its
    ``group``, so metrics can be reported per group.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be between 0 and 1, got {validation_fraction}")
    base = _require(Path(root or dataset_root()) / "dsb2018_stage1", "dsb2018_stage1")
    manifest = json.loads((base / "manifest.json").read_text())["images"]
    training: list[dict[str, str]] = []
    validation: list[dict[str, str]] = []
    rng = np.random.default_rng(seed)
    for group in sorted({entry["group"] for entry in manifest.values()}):
        names = sorted(name for name, entry in manifest.items() if entry["group"] == group)
        held = {names[i] for i in rng.permutation(len(names))[: max(1, round(validation_fraction * len(names)))]}
        for name in names:
            case = {"image": str(base / "images" / f"{name}.png"), "label": str(base / "labels" / f"{name}.png"),
                    "group": group}  # fmt: skip
            (validation if name in held else training).append(case)
    return {
        "name": "dsb2018_stage1",
        "tensorImageSize": "2D",
        "labels": {"0": "background", "1": "nucleus"},
        "label_rule": "instances",
        "split": f"per group, {validation_fraction:g} of the images validate (numpy default_rng({seed}))",
        "training": training,
        "validation": validation,
    }


def msd_spleen_ct(root: str | Path | None = None) -> dict[str, Any]:
    """MSD spleen CT crop (one case; used for training and validation alike in smoke runs)."""
    base = _require(Path(root or dataset_root()) / "msd_spleen_ct_crop", "msd_spleen_ct_crop")
    item = {"image": str(base / "images" / "spleen2_ct.nii.gz"), "label": str(base / "labels" / "spleen2_ct.nii.gz")}
    return {
        "name": "msd_spleen_ct",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "spleen"},
        "training": [item],
        "validation": [item],
    }


def spinegeneric_sc_mri(root: str | Path | None = None, validation_contrast: str = "T2star") -> dict[str, Any]:
    """Spine Generic cord MRI: three co-registered contrasts; one contrast validates."""
    base = _require(Path(root or dataset_root()) / "spinegeneric_sc_mri", "spinegeneric_sc_mri")
    items = {
        c: {
            "image": str(base / "images" / f"sub-unf01_{c}.nii.gz"),
            "label": str(base / "labels" / f"sub-unf01_{c}.nii.gz"),
        }
        for c in ("T1w", "T2w", "T2star")
    }
    return {
        "name": "spinegeneric_sc_mri",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "spinal cord"},
        "training": [v for c, v in items.items() if c != validation_contrast],
        "validation": [items[validation_contrast]],
    }


def tcia_brain_mr(root: str | Path | None = None) -> dict[str, Any]:
    """TCIA PGBM-001: T1post (and FLAIRreg) DICOM series with the MaskTumor series as label."""
    base = _require(Path(root or dataset_root()) / "tcia_pgbm001_dicom", "tcia_pgbm001_dicom")
    item = {"image": str(base / "T1post"), "label": str(base / "MaskTumor")}
    return {
        "name": "tcia_brain_mr",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "tumour"},
        "training": [item],
        "validation": [item],
    }


TUMOUR_CHANNELS = ["(?i)t1post", "(?i)flair"]
TUMOUR_MASK = "(?i)mask"


def tcia_pgbm_tumor(root: str | Path | None = None, fold: int | None = 0) -> dict[str, Any]:
    """TCIA Brain-Tumor-Progression, 5 studies of 3 patients (``<patient>/<study date>/`` folders, each with the
    T1post, FLAIRreg and MaskTumor DICOM series): every case is a study folder, read as two channels (T1post, the
    reference grid, and FLAIR: :data:`TUMOUR_CHANNELS`) with the mask series as label (:data:`TUMOUR_MASK`).

    Split by patient, never by study (two studies of one patient are alike): ``fold`` k of 0, 1, 2 validates the
    k-th patient in name order and trains on the others; ``fold=None`` trains on all and validates on all (for a
    final model whose accuracy the folds state). Every case carries its ``patient`` and ``study``.
    """
    base = _require(Path(root or dataset_root()) / "tcia_pgbm_tumor", "tcia_pgbm_tumor")
    patients = sorted(p.name for p in base.iterdir() if p.is_dir())
    if fold is not None and not 0 <= fold < len(patients):
        raise ValueError(f"fold must be from 0 to {len(patients) - 1} (one per patient: {patients}), got {fold}")
    cases = [
        {"image": str(study), "label": str(study), "patient": patient, "study": f"{patient}/{study.name}"}
        for patient in patients
        for study in sorted(p for p in (base / patient).iterdir() if p.is_dir())
    ]
    held = patients[fold] if fold is not None else None
    return {
        "name": "tcia_pgbm_tumor" if fold is None else f"tcia_pgbm_tumor_fold{fold}",
        "tensorImageSize": "3D",
        "labels": {"0": "background", "1": "tumour"},
        "channels": TUMOUR_CHANNELS,
        "label_series": TUMOUR_MASK,
        "split": "all studies train and validate" if held is None else f"patient-wise: {held} validates",
        "training": [c for c in cases if c["patient"] != held],
        "validation": [c for c in cases if held is None or c["patient"] == held],
    }


DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "isbi2012_em": isbi2012_em,
    "dsb2018_nuclei": dsb2018_nuclei,
    "dsb2018_stage1": dsb2018_stage1,
    "msd_spleen_ct": msd_spleen_ct,
    "spinegeneric_sc_mri": spinegeneric_sc_mri,
    "tcia_brain_mr": tcia_brain_mr,
    "tcia_pgbm_tumor": lambda root=None: tcia_pgbm_tumor(root, fold=None),
    **{f"tcia_pgbm_tumor_fold{k}": (lambda root=None, k=k: tcia_pgbm_tumor(root, fold=k)) for k in range(3)},
}


def make_default_dataset(
    root: str | Path,
    spatial_dims: int = 2,
    n_training: int = 6,
    n_validation: int = 2,
    shape: Sequence[int] | None = None,
    seed: int = 0,
    dicom: bool = False,
) -> Path:
    """Generates medunet's embedded default data set and returns its ``dataset.json``.

    2D: PNG images of touching cells (uint8) with uint16 instance labels. 3D: NIfTI volumes of touching
    blobs in CT-like HU with instance labels, and with ``dicom=True`` each validation volume also as a DICOM
    series (``dicom/<case>/``) with the same geometry. An existing set made with the same arguments is
    reused; a folder holding anything else is refused, so nothing of the user's is overwritten. Several
    processes (e.g. torchrun ranks) may call this at once: a lock file beside the folder serialises them.
    """
    out = Path(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _make_default_dataset(out, spatial_dims, n_training, n_validation, shape, seed, dicom)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_default_dataset(
    out: Path,
    spatial_dims: int,
    n_training: int,
    n_validation: int,
    shape: Sequence[int] | None,
    seed: int,
    dicom: bool,
) -> Path:
    params = {
        "spatial_dims": spatial_dims,
        "n_training": n_training,
        "n_validation": n_validation,
        "shape": list(shape) if shape else None,
        "seed": seed,
        "dicom": dicom,
    }
    listing = out / "dataset.json"
    if listing.exists():
        existing = json.loads(listing.read_text())
        if existing.get("generator") == GENERATOR and existing.get("parameters") == params:
            return listing
        raise FileExistsError(
            f"{listing} exists and was not generated with these parameters; choose an empty folder for the default data"
        )
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; choose an empty or new folder for the generated default data")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    size = tuple(shape) if shape else ((256, 256) if spatial_dims == 2 else (96, 96, 48))
    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    items = []
    spacing = (0.8, 0.8, 2.0)
    affine = np.diag([*spacing, 1.0])
    for i in range(n_training + n_validation):
        if spatial_dims == 2:
            image, instances = synthetic_cells(size, seed=seed * 1000 + i)
            img_path, lab_path = out / "imagesTr" / f"cells_{i:03d}.png", out / "labelsTr" / f"cells_{i:03d}.png"
            Image.fromarray(np.clip(image * 255, 0, 255).astype(np.uint8)).save(img_path)
            Image.fromarray(instances.astype(np.uint16)).save(lab_path)
        else:
            image, instances = synthetic_cells(size, radius=(5.0, 10.0), seed=seed * 1000 + i)
            hu = np.round(image * 400 - 300).astype(np.float32)  # background about -240 HU, blobs 0..60 HU
            img_path, lab_path = out / "imagesTr" / f"blobs_{i:03d}.nii.gz", out / "labelsTr" / f"blobs_{i:03d}.nii.gz"
            nib.save(nib.Nifti1Image(hu, affine), img_path)
            nib.save(nib.Nifti1Image(instances.astype(np.int16), affine), lab_path)
            if dicom and i >= n_training:
                # NIfTI is RAS; the DICOM series gets the same physical grid (LPS origin/direction flipped).
                write_dicom_series(
                    hu,
                    out / "dicom" / f"blobs_{i:03d}",
                    spacing=spacing,
                    direction=np.diag([-1.0, -1.0, 1.0]),
                    modality="CT",
                    series_description=f"medunet synthetic blobs {i:03d}",
                )
        items.append({"image": str(img_path.relative_to(out)), "label": str(lab_path.relative_to(out))})
    datalist = {
        "name": "medunet_synthetic_cells" if spatial_dims == 2 else "medunet_synthetic_blobs",
        "description": "generated by medunet: touching objects with instance labels",
        "tensorImageSize": f"{spatial_dims}D",
        "labels": {"0": "background", "1": "object"},
        "label_rule": "instances",
        "generator": GENERATOR,
        "parameters": params,
        "training": items[:n_training],
        "validation": items[n_training:],
    }
    atomic_write_json(listing, datalist, indent=2)  # written last and atomically: it marks the set complete
    return listing
