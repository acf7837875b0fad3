"""DICOMweb (PS3.18) over HTTP: thin routes that parse, authorize, call the store and respond."""
