"""Transmit: send studies to another node (STOW-RS or DIMSE C-STORE) and say, per instance, what it acknowledged.

`source.py` lists and fetches instances (Aperture over DICOMweb, or a folder of Part-10 files),
`stow.py` and `dimse.py` send them, `retry.py` decides what is worth trying again, `report.py`
holds the per-instance outcome, and `run.py` ties them together per study. The rule everything
here keeps: an instance is reported `sent` only when the receiver acknowledged it by name (a
ReferencedSOPSequence item, a C-STORE success or warning status for its SOP Instance UID).
"""
