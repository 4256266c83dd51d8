"""Property-based tests of the DICOM series reader: random slice orders and file names give the same volume;
random missing, malformed or contradictory header values give a volume or one of the documented errors
(``DicomSeriesError``, a ``ValueError`` naming the file), never another exception. Examples are drawn by
hypothesis (``HYPOTHESIS_PROFILE=fuzz`` draws many more, at random)."""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medunet.data.dicom import write_dicom_series
from medunet.io import load_image

SHAPE = (8, 6, 5)

# pydicom warns about every malformed value it is made to write or read: here they are the point
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("series") / "s"
    volume = np.random.default_rng(0).integers(0, 400, size=SHAPE).astype(np.float32)
    write_dicom_series(volume, folder, spacing=(0.8, 0.9, 2.5), origin=(-10.0, 5.0, 30.0), modality="MR",
                       rescale=(1.0, 0.0))  # fmt: skip
    image = load_image(folder)
    return folder, image.numpy(), image.affine.numpy()


def copy_of(folder: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="fuzz-")) / "s"
    shutil.copytree(folder, target)
    return target


@given(order=st.permutations(range(SHAPE[2])), names=st.lists(st.from_regex(r"[A-Za-z0-9_]{1,12}", fullmatch=True),
       min_size=SHAPE[2], max_size=SHAPE[2], unique=True), instance_numbers=st.permutations(range(1, SHAPE[2] + 1)))  # fmt: skip
def test_slice_order_file_names_and_instance_numbers_do_not_change_the_volume(
    series: tuple[Path, np.ndarray, np.ndarray], order: list[int], names: list[str], instance_numbers: list[int]
) -> None:
    folder, volume, affine = series
    work = copy_of(folder)
    try:
        files = sorted(work.glob("*.dcm"))
        for k, (i, name) in enumerate(zip(order, names, strict=True)):
            ds = pydicom.dcmread(files[i])
            ds.InstanceNumber = instance_numbers[k]  # misleading numbers: the position decides
            ds.save_as(work / f"{name}.tmp")
            files[i].unlink()
        for tmp in work.glob("*.tmp"):
            tmp.rename(tmp.with_suffix(""))  # some without any extension
        image = load_image(work)
        np.testing.assert_array_equal(image.numpy(), volume)
        np.testing.assert_allclose(image.affine.numpy(), affine)
    finally:
        shutil.rmtree(work.parent)


ATTRIBUTES = [
    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "RescaleSlope",
    "RescaleIntercept", "Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber",
    "PixelData", "Modality", "StudyInstanceUID", "FrameOfReferenceUID",
]  # fmt: skip
VALUES = st.one_of(
    st.none(), st.just(""), st.integers(-70000, 70000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="0123456789.-\\eE nan", max_size=16), st.binary(max_size=24),
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=7),
)  # fmt: skip


def _set(ds: pydicom.Dataset, keyword: str, value: Any) -> None:
    """Sets ``keyword`` to ``value`` as best the VR allows (what a careless writer would store); deletes it for
    None."""
    if value is None:
        if keyword in ds:
            del ds[keyword]
        return
    try:
        setattr(ds, keyword, value)
    except (ValueError, TypeError, OverflowError):
        setattr(ds, keyword, str(value)[:16])


@contextmanager
def careless_writer() -> Iterator[None]:
    """pydicom writes values that break their VR's rules (as some exporters do) instead of refusing them."""
    mode = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        pydicom.config.settings.writing_validation_mode = mode


@given(
    edits=st.lists(
        st.tuples(st.integers(0, SHAPE[2] - 1), st.sampled_from(ATTRIBUTES), VALUES), min_size=1, max_size=4
    ),
    truncate=st.one_of(st.none(), st.tuples(st.integers(0, SHAPE[2] - 1), st.integers(0, 2000))),
)
def test_malformed_headers_give_a_volume_or_a_documented_error(
    series: tuple[Path, np.ndarray, np.ndarray], edits: list[tuple[int, str, Any]], truncate: tuple[int, int] | None
) -> None:
    folder, _, _ = series
    work = copy_of(folder)
    try:
        files = sorted(work.glob("*.dcm"))
        for index, keyword, value in edits:
            ds = pydicom.dcmread(files[index])
            try:
                with careless_writer():
                    _set(ds, keyword, value)
                    ds.save_as(files[index])
            except (ValueError, TypeError, OverflowError, AttributeError, KeyError, OSError):
                return  # pydicom cannot encode the value at all: not an input medunet can receive
        if truncate is not None:
            data = files[truncate[0]].read_bytes()
            files[truncate[0]].write_bytes(data[: truncate[1]])
        try:
            image = load_image(work)
        except (ValueError, FileNotFoundError) as err:  # DicomSeriesError is a ValueError
            message = str(err)
        else:
            message = ""
        if message:
            assert str(work) in message or any(f.name in message for f in files), f"names no file: {message}"
            return
        array, affine = image.numpy(), image.affine.numpy()
        assert array.ndim == 4
        assert array.size > 0
        assert np.isfinite(array).all()
        assert np.isfinite(affine).all()
        assert not math.isclose(np.linalg.det(affine[:3, :3]), 0.0, abs_tol=1e-9)
    finally:
        shutil.rmtree(work.parent)
