"""Example clients of the imaging server, shipped as package data (no Python of their own).

`sample_app/` is a small SMART on FHIR imaging app in plain HTML and JavaScript; the imaging server
serves its files at `/apps/sample/` (`aperture.server.apps`) and `aperture demo` registers it at the
EHR sandbox. It is an example of the SMART Imaging Access flow, not a viewer (docs/sample-app.md).
`web_app/` is the app people use to see, preview and download their images, served at `/app/`
(`aperture.server.webapp`, docs/vdt-app.md).
"""

SAMPLE_APP_CLIENT_ID = "sample-viewer"  # the public client `aperture demo` registers for the sample app
WEB_APP_CLIENT_ID = "aperture-app"  # the public client `aperture demo` registers for the app at /app/
