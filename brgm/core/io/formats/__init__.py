"""Readers and writers of the file formats :mod:`brgm.core.io` accepts, one module per family: ``raster``
(PNG, JPEG, TIFF), ``dicom`` (a file or a series directory), ``nifti`` and ``arrays`` (``.npy``, ``.pt``).

Each reader returns the data channel-first as a NumPy array ``[C, *spatial]`` (intensities in [0, 1], or complex
k-space) with its :class:`~brgm.core.io.formats.meta.Meta`; each writer takes the same and writes it back in the
file's units. Use them through :func:`brgm.core.io.load` and :func:`brgm.core.io.save`.
"""
