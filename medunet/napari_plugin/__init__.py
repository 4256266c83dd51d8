"""medunet in napari: a widget that segments the selected image layer with a shipped model or a bundle folder, and a
reader for medunet's outputs (NIfTI, OME-Zarr with its label images). Registered through ``napari.yaml`` (npe2);
installed with ``pip install "medunet[napari]"``.

:mod:`medunet.napari_plugin.layers` does the work without Qt (and is tested without a viewer);
:mod:`medunet.napari_plugin.widget` is the Qt front end and :mod:`medunet.napari_plugin.reader` the reader.
"""
