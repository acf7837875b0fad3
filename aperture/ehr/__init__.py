"""EHR sandbox: a SMART on FHIR authorization server that runs as its own process.

It plays the EHR of SMART Imaging Access: apps register here once, get tokens here, and the imaging
server asks it about those tokens by RFC 7662 introspection over HTTP. Nothing in this package
imports the imaging server (`aperture.dicomweb`, `aperture.store`), and the imaging server never
imports this package.
"""
