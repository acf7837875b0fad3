"""The web viewer: the prebuilt OHIF app and the configuration that points it at Aperture."""
