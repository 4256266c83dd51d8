"""Data: the generated default data set (``synthetic``: touching cells and blobs with instance labels;
``dicom``: writing a volume as a DICOM series) and decathlon-format data lists of it and of the real sets
(``datasets``), read and written by ``datalist``."""
