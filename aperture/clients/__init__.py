"""Clients of the imaging server: the sample SMART app (package data) and the command-line clients' sign-in.

`sample_app/` is a small SMART on FHIR imaging app in plain HTML and JavaScript; the imaging server
serves its files at `/apps/sample/` (`aperture.server.apps`) and `aperture demo` registers it at the
EHR sandbox. It is an example of the SMART Imaging Access flow, not a viewer (docs/sample-app.md).
`web_app/` is the app people use to see, preview and download their images, served at `/app/`
(`aperture.server.webapp`, docs/view-download-transmit.md).
`signin.py` signs a command-line client in at a SMART EHR (a native app's browser flow, RFC 8252,
or Backend Services) and `download.py` is `aperture download`'s engine.
"""

SAMPLE_APP_CLIENT_ID = "sample-viewer"  # the public client `aperture demo` registers for the sample app
WEB_APP_CLIENT_ID = "aperture-app"  # the public client `aperture demo` registers for the app at /app/
# The public native client `aperture demo` registers for `aperture download` / `aperture transmit`:
# a loopback redirect without a port, so the sign-in may listen on any port (RFC 8252 §7.3).
CLI_CLIENT_ID = "aperture-cli"
CLI_REDIRECT_URI = "http://127.0.0.1/callback"
