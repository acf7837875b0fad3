"""`python -m aperture.viewer.precompress [--config FILE]`: OHIF's brotli and gzip copies made now, once.

`make install` runs it after fetching OHIF, so the first `aperture serve` / `make demo` does not
spend its first two minutes compressing (and serving the viewer uncompressed meanwhile). It writes
what a server with the same configuration would (aperture/viewer/dist.py), skips what is there
already, and waits for a server that is compressing the same folder. Without OHIF it says so and
succeeds: the viewer is optional.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from aperture.config import load_config
from aperture.viewer.routes import prepared_dist


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aperture.viewer.precompress", description=__doc__)
    parser.add_argument("--config", type=Path, help="the server's config file (its [viewer] and public_url)")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    started = time.monotonic()
    served = prepared_dist(config)
    if served is None:
        print(f"OHIF is not at {config.viewer.ohif_dist}: nothing to precompress")
        return 0
    done = served.compress_all(wait=True)
    took = time.monotonic() - started
    print(f"OHIF: {done} file(s) compressed in {took:.0f} s into {served.folder}" if done else "OHIF: precompressed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
