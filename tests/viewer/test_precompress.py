"""`make install` precompresses OHIF (`python -m aperture.viewer.precompress`): a first start has nothing to do."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import imagecodecs

from aperture.config import load_config
from aperture.viewer.precompress import main
from aperture.viewer.routes import open_viewer

ROOT = Path(__file__).parents[2]


def _dist(folder: Path) -> Path:
    """A dist shaped like OHIF's: an index naming a hashed bundle that loads from the root, a stylesheet, a picture."""
    folder.mkdir()
    (folder / "index.html").write_text(
        '<html><head><script src="/app.bundle.0123456789abcdef.js"></script></head><body></body></html>'
    )
    (folder / "app.bundle.0123456789abcdef.js").write_text('__webpack_require__.p = "/";\n' + "let a = 1;\n" * 2000)
    (folder / "app.css").write_text("body { background: url(/logo.png); }\n")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return folder


def test_precompress_writes_every_copy_once_and_the_first_start_has_nothing_left(tmp_path: Path) -> None:
    dist = _dist(tmp_path / "dist")
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[viewer]\nohif_dist = "{dist.as_posix()}"\ncache = "{(tmp_path / "cache").as_posix()}"\n')
    made = subprocess.run(
        [sys.executable, "-m", "aperture.viewer.precompress", "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "3 file(s) compressed" in made.stdout, made.stdout + made.stderr  # index.html, the bundle, the css
    config = load_config(config_file)
    served = open_viewer(config)  # what a server start does: prepare, then compress in the background
    assert served is not None
    compressible = [a for a in served.assets.values() if a.copies]
    assert sorted(a.name for a in compressible) == ["app.bundle.0123456789abcdef.js", "app.css", "index.html"]
    for asset in compressible:
        identity = asset.path.read_bytes()
        brotli, gzipped = asset.encoded("br"), asset.encoded("gzip")
        assert brotli is not None and gzipped is not None, asset.name
        assert bytes(imagecodecs.brotli_decode(brotli.read_bytes())) == identity
        assert gzip.decompress(gzipped.read_bytes()) == identity
    assert b'"/viewer/' in served.assets["app.bundle.0123456789abcdef.js"].path.read_bytes()  # the rewritten bytes
    written = {p: p.stat().st_mtime_ns for p in served.folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert served.compress_all(wait=True) == 0  # the server start's pass: nothing left
    assert main(["--config", str(config_file)]) == 0  # `make install` again: nothing redone
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_make_install_precompresses_ohif() -> None:
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"^install:(.*)$", makefile, re.MULTILINE)
    assert install is not None and "$(OHIF_CACHE)/.precompressed" in install.group(1)
    rule = makefile.split("$(OHIF_CACHE)/.precompressed:", 1)[1].split("\n\n", 1)[0]
    assert "-m aperture.viewer.precompress" in rule
