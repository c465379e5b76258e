"""brgm's own file formats, registered through the same hook as a third-party plugin's."""

from __future__ import annotations

from brgm.core.hookspecs import hookimpl
from brgm.core.io.formats import FileFormat, arrays, dicom, nifti, raster


@hookimpl
def register_formats() -> list[FileFormat]:
    return [*raster.FORMATS, *dicom.FORMATS, nifti.FORMAT, *arrays.FORMATS]
