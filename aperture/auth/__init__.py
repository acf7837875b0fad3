"""Who may see what: the resource-server side of the EHR's authorization."""
