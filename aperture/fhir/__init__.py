"""The imaging server's FHIR R4 endpoint at /fhir: ImagingStudy and its WADO-RS Endpoint (docs/fhir.md).

Resources are made from the SQL index kept at store time (no DICOM file is opened for a search) and
follow the SMART Imaging Access profiles SmartImagingStudy and SmartWadoEndpoint. Every index read
takes the AccessScope of `authorize(request, READ_IMAGING)`. This package is separate from
`aperture.ehr.fhir` (the EHR sandbox's clinical FHIR server): neither imports the other.
"""
