"""Composition root: builds the imaging server's ASGI application."""
