"""Interchange media (IHE PDI): a patient's studies as a folder or zip any hospital can import."""
