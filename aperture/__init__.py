"""Aperture: an imaging server that frees medical images from silos."""

__version__ = "0.1.0"
