"""`python -m aperture` runs the `aperture` command."""

from aperture.cli.main import main

raise SystemExit(main())
