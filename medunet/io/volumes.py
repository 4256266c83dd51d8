"""Volumes larger than memory: zarr arrays, OME-Zarr images and (Big)TIFF files, read and written lazily.

A :class:`Volume` is an array on disk that is sliced, never loaded whole: zarr v3 (and v2) arrays through
``zarr``, OME-Zarr images (NGFF 0.4 / 0.5 multiscale metadata: axes, voxel size, origin) whose full-resolution
level is read, and TIFF / BigTIFF files through ``tifffile``'s zarr view of their pages and tiles. Outputs are
OME-Zarr 0.5 images on zarr v3 (metadata written by ``ome-zarr``) carrying the input's axes, voxel size and
origin; :func:`export_tiff` streams one into an OME-TIFF (BigTIFF, tiled) for tools that read TIFF only.

Every problem is a :class:`VolumeError` naming the path and what to do; nothing at the input path is ever
written, and an existing output is replaced only when asked.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.config import PathLike
from monai.data import ImageReader

from medunet.utils.files import atomic_write_path

__all__ = [
    "TIFF_SUFFIXES",
    "Volume",
    "VolumeError",
    "VolumeReader",
    "check_writable_output",
    "create_volume",
    "export_tiff",
    "is_volume_path",
    "open_volume",
]

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIXES = (".zarr",)
_SPATIAL = ("z", "y", "x")


class VolumeError(ValueError):
    """A volume that cannot be read or an output that cannot be written; the message names the path."""


def is_volume_path(path: str | Path) -> bool:
    """True for what :func:`open_volume` reads: a ``.zarr`` folder (or any folder holding zarr metadata)."""
    p = Path(path)
    return p.name.lower().endswith(ZARR_SUFFIXES) or (p / "zarr.json").is_file() or (p / ".zarray").is_file()


class _ChannelFirst:
    """A lazy ``(C, *S)`` view of an array stored with its channel axis anywhere (or none, or a time axis of
    length 1): slicing it slices the stored array once."""

    def __init__(self, array: Any, channel_axis: int | None, drop_axes: Sequence[int]) -> None:
        self.array = array
        self.channel_axis = channel_axis
        self.drop_axes = tuple(drop_axes)
        kept = [a for a in range(array.ndim) if a not in self.drop_axes]
        self.spatial_axes = tuple(a for a in kept if a != channel_axis)
        channels = 1 if channel_axis is None else int(array.shape[channel_axis])
        self.shape = (channels, *(int(array.shape[a]) for a in self.spatial_axes))
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        index = tuple(index) + (slice(None),) * (self.ndim - len(index))
        stored: list[Any] = [0] * self.array.ndim
        for a in self.drop_axes:
            stored[a] = 0
        if self.channel_axis is not None:
            stored[self.channel_axis] = index[0]
        for a, s in zip(self.spatial_axes, index[1:]):
            stored[a] = s
        block = np.asarray(self.array[tuple(stored)])
        if self.channel_axis is None:
            return block[None][index[0]]
        # After integer-indexing the dropped axes, the channel axis sits among the spatial ones: move it first.
        position = self.channel_axis - sum(1 for a in self.drop_axes if a < self.channel_axis)
        return np.moveaxis(block, position, 0)


@dataclass
class Volume:
    """An image on disk, sliced lazily.

    Attributes:
        path: what was opened (the zarr group / array folder, or the TIFF file).
        array: the stored array (a ``zarr.Array``), full resolution.
        axes: the stored axes' names, e.g. ``("c", "z", "y", "x")``.
        voxel_size / origin: per spatial axis, in the stored order (1 and 0 where the file says nothing).
        unit: the spatial unit (e.g. ``"micrometer"``), ``None`` if not stated.
        kind: ``"ome-zarr"``, ``"zarr"`` or ``"tiff"``.
    """

    path: Path
    array: Any
    axes: tuple[str, ...]
    voxel_size: tuple[float, ...]
    origin: tuple[float, ...]
    unit: str | None
    kind: str
    _handle: Any = field(default=None, repr=False)

    @property
    def channel_axis(self) -> int | None:
        return self.axes.index("c") if "c" in self.axes else None

    @property
    def channel_first(self) -> _ChannelFirst:
        """``(C, *S)`` lazy view (a single channel added when the volume has none; a time axis of length 1
        dropped)."""
        drop = [a for a, name in enumerate(self.axes) if name == "t"]
        return _ChannelFirst(self.array, self.channel_axis, drop)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.channel_first.shape[1:]

    @property
    def spatial_axes(self) -> tuple[str, ...]:
        return tuple(a for a in self.axes if a not in ("c", "t"))

    @property
    def chunks(self) -> tuple[int, ...]:
        """The stored chunk shape of the spatial axes."""
        view = self.channel_first
        return tuple(int(self.array.chunks[a]) for a in view.spatial_axes)

    def affine(self) -> np.ndarray:
        """A 4x4 affine for the spatial axes in the stored order (scale and origin, no rotation)."""
        dims = len(self.voxel_size)
        affine = np.eye(4)
        affine[:dims, :dims] = np.diag(self.voxel_size)
        affine[:dims, 3] = self.origin
        return affine

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def open_volume(path: str | Path, array: str | None = None) -> Volume:
    """Opens a zarr array, an OME-Zarr image or a (Big)TIFF file without reading its voxels.

    Args:
        path: a ``.zarr`` folder (an array, a group holding one, or an OME-Zarr image) or a ``.tif``/``.tiff``.
        array: the array's path inside a zarr group (default: the OME-Zarr image's full-resolution level, or
            the group's only array).

    Raises:
        FileNotFoundError: nothing at ``path``. :class:`VolumeError`: not a zarr store or TIFF, a missing array or
        group, several arrays and none named, an OME-Zarr image without readable multiscale metadata, or a
        dtype that is not a number.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p} does not exist; give a zarr array, an OME-Zarr image (.zarr) or a TIFF file")
    is_tiff = p.is_file() and p.name.lower().endswith(TIFF_SUFFIXES)
    volume = _open_tiff(p) if is_tiff else _open_zarr(p, array)
    dtype = np.dtype(volume.array.dtype)
    if dtype.kind not in "biuf":
        raise VolumeError(
            f"{p}: the array holds {dtype} values; medunet segments images of numbers (integers or floats). "
            "Convert it, or name the image array with --array."
        )
    return volume


def _open_zarr(path: Path, array: str | None) -> Volume:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except (FileNotFoundError, ValueError, KeyError, TypeError) as err:
        raise VolumeError(
            f"{path} is not a zarr array or group ({err.__class__.__name__}: {err}); medunet reads zarr v2/v3 "
            "arrays, OME-Zarr images and TIFF files"
        ) from None
    if isinstance(node, zarr.Array):
        if array is not None:
            raise VolumeError(f"{path} is a zarr array, not a group; it holds no array {array!r} (leave --array out)")
        return Volume(path, node, _default_axes(node.ndim, path), *_unit_scale(node.ndim), "zarr")
    multiscales = _multiscales(node)
    if array is None:
        if multiscales is not None:
            datasets = multiscales.get("datasets") or []
            if not datasets or "path" not in datasets[0]:
                raise VolumeError(f"{path}: OME-Zarr multiscale metadata without datasets; cannot find the image")
            array = str(datasets[0]["path"])
        else:
            names = sorted(name for name, _ in node.arrays())
            if len(names) != 1:
                raise VolumeError(
                    f"{path} is a zarr group with {len(names)} arrays ({', '.join(names) or 'none'}) and no OME-Zarr "
                    "metadata; name the image array with --array (array= in Python)"
                )
            array = names[0]
    try:
        stored = node[array]
    except KeyError:
        names = sorted(name for name, _ in node.arrays())
        groups = sorted(name for name, _ in node.groups())
        raise VolumeError(
            f"{path}: no array {array!r} in the group (arrays: {', '.join(names) or 'none'}; groups: "
            f"{', '.join(groups) or 'none'})"
        ) from None
    if not isinstance(stored, zarr.Array):
        raise VolumeError(f"{path}/{array} is a group, not an array; name an array inside it with --array")
    if multiscales is not None and array == str(multiscales["datasets"][0]["path"]):
        axes, scale, origin, unit = _ngff_geometry(multiscales, stored.ndim, path)
        return Volume(path, stored, axes, scale, origin, unit, "ome-zarr")
    return Volume(path, stored, _default_axes(stored.ndim, path), *_unit_scale(stored.ndim), "zarr")


def _multiscales(group: Any) -> dict | None:
    attrs = dict(group.attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests the metadata under "ome"; 0.4 keeps it at the top
    multiscales = ome.get("multiscales") if isinstance(ome, dict) else None
    return multiscales[0] if isinstance(multiscales, list) and multiscales else None


def _default_axes(ndim: int, path: Path) -> tuple[str, ...]:
    """Axes of a plain zarr array: ``(y, x)``, ``(z, y, x)``, or a leading channel axis ``(c, z, y, x)``."""
    if ndim == 2:
        return ("y", "x")
    if ndim == 3:
        return _SPATIAL
    if ndim == 4:
        return ("c", *_SPATIAL)
    raise VolumeError(
        f"{path}: a {ndim}D zarr array; medunet reads 2D (y, x), 3D (z, y, x) and 4D (c, z, y, x) arrays, or "
        "OME-Zarr images whose metadata names the axes"
    )


def _unit_scale(ndim: int) -> tuple[tuple[float, ...], tuple[float, ...], None]:
    """Voxel size 1, origin 0 and no unit: a plain zarr array states none."""
    dims = 2 if ndim == 2 else 3
    return (1.0,) * dims, (0.0,) * dims, None


def _ngff_geometry(
    multiscales: dict, ndim: int, path: Path
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], str | None]:
    """Axes, voxel size, origin and unit of an OME-Zarr image's full-resolution level."""
    axes_meta = multiscales.get("axes") or []
    names = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta)
    if len(names) != ndim:
        raise VolumeError(f"{path}: the OME-Zarr metadata names {len(names)} axes for a {ndim}D array")
    unknown = [n for n in names if n not in ("c", "t", *_SPATIAL)]
    if unknown:
        raise VolumeError(f"{path}: OME-Zarr axes {names}; medunet reads t, c, z, y, x (unknown: {unknown})")
    scale, origin = [1.0] * ndim, [0.0] * ndim
    for transform in list(multiscales.get("coordinateTransformations") or []) + list(
        multiscales["datasets"][0].get("coordinateTransformations") or []
    ):
        if transform.get("type") == "scale":
            scale = [s * float(v) for s, v in zip(scale, transform["scale"])]
        elif transform.get("type") == "translation":
            origin = [o + float(v) for o, v in zip(origin, transform["translation"])]
    spatial = [i for i, n in enumerate(names) if n in _SPATIAL]
    units = {a.get("unit") for i, a in enumerate(axes_meta) if i in spatial and isinstance(a, dict)}
    unit = units.pop() if len(units) == 1 else None
    return names, tuple(scale[i] for i in spatial), tuple(origin[i] for i in spatial), unit


def _open_tiff(path: Path) -> Volume:
    import tifffile
    import zarr

    try:
        handle = tifffile.TiffFile(str(path))
        series = handle.series[0]
        store = series.aszarr()
        stored = zarr.open(store, mode="r")
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError) as err:
        raise VolumeError(f"{path}: not a readable TIFF ({err.__class__.__name__}: {err})") from None
    if isinstance(stored, zarr.Group):  # a pyramid: level 0 is full resolution
        stored = stored["0"]
    letters = series.axes.upper()
    mapping = {"Z": "z", "Y": "y", "X": "x", "C": "c", "S": "c", "T": "t", "Q": "z", "I": "z"}
    names = tuple(mapping.get(a, a.lower()) for a in letters)
    if len(set(names)) != len(names) or any(n not in ("c", "t", *_SPATIAL) for n in names):
        handle.close()
        raise VolumeError(f"{path}: TIFF axes {letters!r}; medunet reads stacks of pages with axes among Z, C, Y, X")
    dims = sum(n in _SPATIAL for n in names)
    if handle.is_ome:
        ome = _ome_geometry(handle, tuple(n for n in names if n in _SPATIAL))
        return Volume(path, stored, names, *ome, "tiff", handle)
    voxel = [1.0] * dims
    imagej = handle.imagej_metadata or {}
    if "spacing" in imagej and dims == 3:
        voxel[0] = float(imagej["spacing"])
    page = handle.pages.first
    for tag, axis in (("YResolution", dims - 2), ("XResolution", dims - 1)):
        value = page.tags.get(tag)
        if value is not None and value.value[0]:
            voxel[axis] = value.value[1] / value.value[0]
    unit = imagej.get("unit") if isinstance(imagej.get("unit"), str) else None
    return Volume(path, stored, names, tuple(voxel), (0.0,) * dims, unit, "tiff", handle)


# OME-XML length units (the symbols OME-TIFF uses) and NGFF's unit names, for the units medunet writes and reads.
_OME_UNITS = {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
              "Å": "angstrom", "pm": "picometer"}  # fmt: skip


def _ome_geometry(handle: Any, axes: Sequence[str]) -> tuple[tuple[float, ...], tuple[float, ...], str | None]:
    """Voxel size, origin (0: OME-TIFF stores none per image) and unit of an OME-TIFF's first image, per axis."""
    import tifffile

    pixels = tifffile.xml2dict(handle.ome_metadata).get("OME", {}).get("Image", {})
    pixels = (pixels[0] if isinstance(pixels, list) else pixels).get("Pixels", {})
    voxel = tuple(float(pixels.get(f"PhysicalSize{a.upper()}", 1.0)) for a in axes)
    units = {pixels.get(f"PhysicalSize{a.upper()}Unit", "µm") for a in axes if f"PhysicalSize{a.upper()}" in pixels}
    unit = _OME_UNITS.get(units.pop()) if len(units) == 1 else None
    return voxel, (0.0,) * len(axes), unit


def export_tiff(
    source: str | Path,
    path: str | Path,
    array: str | None = None,
    overwrite: bool = False,
    tile: tuple[int, int] = (256, 256),
    compression: str | None = "zlib",
) -> Path:
    """Streams a zarr / OME-Zarr volume (e.g. a blockwise output) into an OME-TIFF: BigTIFF, one page per plane,
    each page in ``tile`` tiles, the voxel size and unit in the OME-XML.

    Memory: one slab of planes as deep as the source's chunks along the axis before ``y`` (a whole plane for 2D),
    never the volume. The origin is not kept (an OME-TIFF image has none); float16 is written as float32 (OME
    has no float16). Written atomically (:func:`medunet.utils.files.atomic_write_path`), so an interrupted
    export leaves nothing under ``path``. ``tifffile`` writes the TIFF; it cannot write tiles from several
    processes, which is why blockwise runs write zarr and export afterwards.

    Raises:
        VolumeError: an unreadable source, or a ``path`` that exists (without ``overwrite``), lies in the source
            or cannot be written (each naming the path).
    """
    import tifffile

    volume = open_volume(source, array)
    out = Path(path)
    check_writable_output(out, overwrite, protect=[source])
    data = volume.array
    axes = "".join(a.upper() for a in volume.axes)
    if axes[-2:] != "YX":
        raise VolumeError(f"{source}: axes {volume.axes}; a TIFF page needs the last two axes to be y and x")
    shape = tuple(int(n) for n in data.shape)
    lead = shape[:-2]
    depth = int(data.chunks[-3]) if len(shape) > 2 else 1
    dtype = np.dtype(np.float32) if data.dtype == np.float16 else np.dtype(data.dtype)  # OME has no float16

    def slabs() -> Any:
        # Planes in C order; the axis before y is read in slabs of its chunk depth (each chunk decoded once).
        if not lead:
            yield np.asarray(data[:])[None]
            return
        for index in itertools.product(*(range(n) for n in lead[:-1])):
            for z0 in range(0, lead[-1], depth):
                yield np.asarray(data[(*index, slice(z0, z0 + depth))])

    def tiles() -> Any:
        for slab in slabs():
            for plane in slab:
                for y in range(0, shape[-2], tile[0]):
                    for x in range(0, shape[-1], tile[1]):
                        yield plane[y : y + tile[0], x : x + tile[1]].astype(dtype, copy=False)

    metadata: dict[str, Any] = {"axes": axes}
    symbol = {name: sym for sym, name in _OME_UNITS.items()}.get(volume.unit or "")
    # OME's default unit is the micrometer: a volume without unit or voxel size gets no physical size at all
    stated = volume.unit is not None or any(v != 1.0 for v in volume.voxel_size)
    for axis, size in zip(volume.spatial_axes, volume.voxel_size) if stated else ():
        metadata[f"PhysicalSize{axis.upper()}"] = float(size)
        if symbol:
            metadata[f"PhysicalSize{axis.upper()}Unit"] = symbol

    def write(tmp: Path) -> None:
        with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
            tif.write(tiles(), shape=shape, dtype=dtype, tile=tile, compression=compression, metadata=metadata)
        if out.is_dir():  # overwrite=True (checked above), and only once the TIFF is complete; a file is replaced
            shutil.rmtree(out)  # by the rename

    return atomic_write_path(out, write)


def create_volume(
    path: str | Path,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    axes: Sequence[str],
    voxel_size: Sequence[float],
    origin: Sequence[float],
    unit: str | None = None,
    name: str = "segmentation",
    attributes: dict | None = None,
    overwrite: bool = False,
    protect: Sequence[str | Path] = (),
) -> Any:
    """Creates an OME-Zarr 0.5 image (zarr v3 group with one full-resolution array ``0``) and returns the array.

    Args:
        path: the output folder; refused if it exists unless ``overwrite`` (then it is removed first).
        shape, dtype, chunks: of the array, axes ``axes`` (``"c"`` and spatial names).
        voxel_size, origin, unit: per spatial axis, written as the NGFF scale and translation.
        attributes: stored under ``"medunet"`` in the group's attributes (how the output was made).
        protect: paths that must not be written (the input): refused if ``path`` is one of them or inside one.

    Raises:
        :class:`VolumeError`: ``path`` exists and ``overwrite`` is false, ``path`` is (inside) a protected path,
        or its folder cannot be written.
    """
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_multiscales_metadata

    p = Path(path)
    check_writable_output(p, overwrite, protect)
    if p.exists():
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    try:
        group = zarr.open_group(str(p), mode="w-", zarr_format=3)
        array = group.create_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0)
    except (OSError, PermissionError) as err:
        raise VolumeError(f"{p}: cannot create the output ({err.__class__.__name__}: {err})") from None
    spatial = [a for a in axes if a != "c"]
    axes_meta = [
        {"name": a, "type": "channel"} if a == "c" else {"name": a, "type": "space", **({"unit": unit} if unit else {})}
        for a in axes
    ]
    scale, translation, k = [], [], 0
    for a in axes:
        if a == "c":
            scale.append(1.0)
            translation.append(0.0)
        else:
            scale.append(float(voxel_size[k]))
            translation.append(float(origin[k]))
            k += 1
    assert k == len(spatial)
    transforms = [{"type": "scale", "scale": scale}]
    if any(translation):
        transforms.append({"type": "translation", "translation": translation})
    write_multiscales_metadata(
        group,
        datasets=[{"path": "0", "coordinateTransformations": transforms}],
        fmt=FormatV05(),
        axes=axes_meta,
        name=name,
    )
    if attributes is not None:
        group.attrs["medunet"] = attributes
    return array


def check_writable_output(path: Path, overwrite: bool, protect: Sequence[str | Path] = ()) -> None:
    """Refuses an output that exists (without ``overwrite``), that is or lies inside an input, or whose folder is
    not writable, each with a message naming the path."""
    resolved = path.resolve()
    for other in protect:
        q = Path(other).resolve()
        if resolved == q or q in resolved.parents:
            raise VolumeError(f"{path}: the output would be written into the input {other}; choose another output path")
    if path.exists() and not overwrite:
        raise VolumeError(
            f"{path} already exists; medunet does not overwrite it. Choose another output path, or pass --overwrite "
            "(overwrite=True) to replace it"
        )
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VolumeError(f"{path}: cannot write there ({parent} is not writable); choose another output path")


class VolumeReader(ImageReader):
    """MONAI reader of zarr arrays, OME-Zarr images and BigTIFF files (whole, into memory: for ``load_image`` and
    the bundles; volumes larger than memory go through :mod:`medunet.apps.blockwise`).

    The data follow MONAI's convention: channel first, then the spatial axes reversed from the stored
    ``(z, y, x)`` to ``(x, y, z)``, with an affine of the voxel size and origin in that order (as nibabel reads a
    NIfTI), so the bundles' 3D networks see zarr volumes as they see NIfTI volumes.
    """

    def __init__(self, array: str | None = None, max_bytes: int | None = None) -> None:
        super().__init__()
        self.array = array
        self.max_bytes = max_bytes

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return all(is_volume_path(str(n)) or str(n).lower().endswith(TIFF_SUFFIXES) for n in names)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Volume:
        if not isinstance(data, (str, os.PathLike)):
            raise ValueError("VolumeReader reads one volume at a time")
        volume = open_volume(str(data), self.array)
        from medunet.io.checks import MAX_IMAGE_BYTES_ENV, max_image_bytes

        view = volume.channel_first
        needed, limit = int(np.prod(view.shape)) * 4, self.max_bytes or max_image_bytes()  # float32 once loaded
        if needed > limit:
            volume.close()
            raise VolumeError(
                f"{data}: {view.shape} voxels need {needed} bytes as float32, more than the limit of {limit} for "
                f"loading a whole image; segment it block by block with `medunet blockwise`, or raise "
                f"${MAX_IMAGE_BYTES_ENV}"
            )
        return volume

    def get_data(self, img: Volume) -> tuple[np.ndarray, dict]:
        view = img.channel_first
        data = view[(slice(None),) * view.ndim]
        img.close()
        spatial = data.ndim - 1
        data = np.transpose(data, (0, *range(spatial, 0, -1)))  # (C, z, y, x) -> (C, x, y, z)
        affine = np.eye(4)
        affine[:spatial, :spatial] = np.diag(img.voxel_size[::-1])
        affine[:spatial, 3] = img.origin[::-1]
        meta = {
            "affine": affine, "original_affine": affine.copy(), "spatial_shape": np.asarray(data.shape[1:]),
            "original_channel_dim": 0, "space": "unknown", "axes": list(img.axes), "unit": img.unit or "",
        }  # fmt: skip
        return data, meta
