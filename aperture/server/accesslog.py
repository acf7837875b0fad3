"""The access log moved to `aperture.logs` (both servers use it); this name keeps old imports working."""

from aperture.logs import AccessLog, client_address, redact, target

__all__ = ["AccessLog", "client_address", "redact", "target"]
