"""The `aperture` command: thin shells over the packages (after pynetdicom's apps)."""
