"""Compressed DICOM transfer syntaxes: which ones medunet accepts and decodes, and which codec a missing one needs.

Scanners and PACS nodes often push JPEG Lossless, JPEG-LS, JPEG 2000 or RLE. pydicom decodes them through
installable plugins (pylibjpeg with pylibjpeg-libjpeg and pylibjpeg-openjpeg, which medunet depends on; RLE and
deflate need nothing). A storage SCP accepts a compressed syntax only where a decoder is installed, so a sender
falls back to another of its proposals instead of storing data medunet cannot read; the ones left out are
logged with the package that decodes them.
"""

from __future__ import annotations

import logging

from pydicom import uid
from pydicom.pixels import get_decoder
from pynetdicom import StoragePresentationContexts
from pynetdicom.presentation import PresentationContext, build_context

__all__ = [
    "COMPRESSED_TRANSFER_SYNTAXES",
    "UNCOMPRESSED_TRANSFER_SYNTAXES",
    "codec_hint",
    "decodable_transfer_syntaxes",
    "storage_contexts",
]

logger = logging.getLogger(__name__)

UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,  # deflate is a zlib stream around the whole data set: nothing to install
    uid.ExplicitVRBigEndian,
)

COMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.HTJ2K,
    uid.RLELossless,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
)
"""Lossless first: a sender proposing several gets the lossless one."""

_PACKAGES = {
    "JPEG-LS": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "JPEG": "pylibjpeg pylibjpeg-libjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
}


def codec_hint(transfer_syntax: str) -> str:
    """What to install to decode ``transfer_syntax`` (empty when a decoder is installed or none is needed)."""
    syntax = uid.UID(transfer_syntax)
    if not syntax.is_compressed:
        return ""
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"pydicom has no decoder for {syntax.name} ({syntax}); ask the sender for another transfer syntax"
    if decoder.is_available:
        return ""
    family = next((name for name in _PACKAGES if name in syntax.name), "")
    packages = _PACKAGES.get(family, "the plugins pydicom lists")
    return f"{syntax.name} ({syntax}) needs a codec that is not installed: pip install {packages}"


def decodable_transfer_syntaxes() -> list[str]:
    """The uncompressed syntaxes and every compressed one with an installed decoder; logs those left out."""
    usable = list(UNCOMPRESSED_TRANSFER_SYNTAXES)
    for syntax in COMPRESSED_TRANSFER_SYNTAXES:
        hint = codec_hint(syntax)
        if hint:
            logger.warning("not accepting %s", hint)
        else:
            usable.append(syntax)
    return usable


def storage_contexts(transfer_syntaxes: list[str] | None = None) -> list[PresentationContext]:
    """pynetdicom's storage presentation contexts, each offering ``transfer_syntaxes`` (by default the
    :func:`decodable_transfer_syntaxes`) instead of pynetdicom's uncompressed ones."""
    syntaxes = decodable_transfer_syntaxes() if transfer_syntaxes is None else transfer_syntaxes
    return [build_context(str(context.abstract_syntax), syntaxes) for context in StoragePresentationContexts]
