"""Pure DICOM code for Aperture: no HTTP, SQL or network imports live in this package."""
