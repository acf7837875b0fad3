"""The prebuilt OHIF `dist/`, made servable under a prefix: its root paths rewritten, its files precompressed.

OHIF's npm build assumes it lives at the root of an origin: index.html names `/app.bundle….js`,
`window.PUBLIC_URL="/"`, its stylesheet a font at `url(/…)`, and every webpack runtime (the app
and its workers) loads chunks and wasm from `__webpack_require__.p = "/"`. Under `/viewer/` those
are rewritten once, byte for byte the same otherwise; the service worker registration is dropped
(its precache list names root paths, and the HTTP cache already keeps the hashed files). The
rewritten files and a brotli and a gzip copy of every compressible file go to a cache folder next
to the dist (the dist itself is never written), so each file is compressed once per machine, not
once per request: brotli at its best level is far too slow to do on the fly (about 7 s per MB) and
is what makes a CDN's answers small. `prepare` rewrites synchronously (a fraction of a second);
`compress_all` runs once at `make install` (`python -m aperture.viewer.precompress`, about two
minutes on two cores), and again in a background thread at every server start, where it finds
nothing left to do unless the cache lacks copies (another prefix, a cleared cache): until a file's
copies exist it is served as is. The folder is named after the build (index.html names every hashed bundle) and the
prefix, so another OHIF build or prefix starts a fresh one.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import imagecodecs

log = logging.getLogger("aperture.viewer")

# content types of what OHIF's dist holds; anything else is application/octet-stream
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = {".html", ".js", ".mjs", ".css", ".json", ".jsonc", ".map", ".webapp", ".wasm", ".svg", ".ico", ".xml"}
# a content hash in the name (`89.bundle.b327bf3664812958.js`, `37fa160cc3a47cfd.wasm`): never changes
HASHED = re.compile(r"(?:^|[./])[0-9a-f]{16}\.[a-z0-9]+$")
# brotli 11 costs ~7 s per MB, level 9 ~0.2 s for ~10 % more bytes: 11 for the many small files only
BROTLI_BEST_UP_TO = 256 * 1024
WEBPACK_ROOT = b'__webpack_require__.p = "/";'
SERVICE_WORKER = re.compile(rb'<script[^>]*src="/init-service-worker\.js"[^>]*></script>')
ENCODINGS = {"br": ".br", "gzip": ".gz"}
HTJ2K_DECODER = b"HTJ2KDecoder"  # a name the OpenJPH decoder's wasm exports (cornerstone's codec-openjph)


@dataclass(frozen=True)
class Asset:
    """One file of the dist as served: where its bytes are, and whether its name pins its content."""

    name: str  # relative to the dist, with `/`
    path: Path  # the identity bytes: the rewritten copy in the cache, or the dist's own file
    media_type: str
    immutable: bool
    etag: str  # strong, quoted; an encoded copy adds its encoding to it
    copies: dict[str, Path]  # encoding ("br", "gzip") → where its precompressed copy goes; empty: not compressed

    def encoded(self, encoding: str) -> Path | None:
        """The precompressed copy for `encoding`, when it is there yet."""
        copy = self.copies.get(encoding)
        return copy if copy is not None and copy.is_file() else None


class ServedDist:
    """The dist's files by name (exact names only: a request path never reaches outside the dist)."""

    def __init__(self, dist: Path, cache: Path, prefix: str) -> None:
        self.dist = dist
        self.prefix = prefix
        self.folder = cache / _fingerprint(dist, prefix)
        self.assets: dict[str, Asset] = {}

    def prepare(self) -> None:
        """Rewrite the files that name the origin's root, and index every file of the dist."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.dist.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            name = path.relative_to(self.dist).as_posix()
            source = path
            if name == "index.html" or path.suffix in (".js", ".css"):
                rewritten = self._rewrite(name, path.read_bytes())
                if rewritten is not None:
                    source = self.folder / name
                    if not source.is_file() or source.read_bytes() != rewritten:
                        _write(source, rewritten)
                        for ext in ENCODINGS.values():  # compressed from the earlier bytes: made again
                            (self.folder / (name + ext)).unlink(missing_ok=True)
            stat = source.stat()
            etag = hashlib.sha256(f"{name}:{stat.st_size}:{stat.st_mtime_ns}:{self.prefix}".encode()).hexdigest()[:24]
            media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
            copies = {enc: self.folder / (name + ext) for enc, ext in ENCODINGS.items()}
            compressed = copies if path.suffix in COMPRESSIBLE else {}
            self.assets[name] = Asset(name, source, media, bool(HASHED.search(name)), f'"{etag}"', compressed)

    def _rewrite(self, name: str, data: bytes) -> bytes | None:
        if name == "index.html":
            text = SERVICE_WORKER.sub(b"", data)  # its sw.js precaches root paths; the HTTP cache does the job
            text = re.sub(rb'((?:href|src)=")/(?!/)', rb"\1" + self.prefix.encode(), text)
            text = text.replace(b"</head>", self._preloads() + b"</head>", 1)
            return text.replace(b'window.PUBLIC_URL="/"', b'window.PUBLIC_URL="' + self.prefix.encode() + b'"')
        if name.endswith(".css"):
            return re.sub(rb"url\(/(?!/)", b"url(" + self.prefix.encode(), data) if b"url(/" in data else None
        if WEBPACK_ROOT in data:
            return data.replace(WEBPACK_ROOT, b'__webpack_require__.p = "' + self.prefix.encode() + b'";')
        return None

    def _preloads(self) -> bytes:
        """`<link rel=preload>` for the HTJ2K decoder: the decode worker asks for it only once the first
        frame has arrived, one round trip and 0.5 MB later than the page could have; preloaded, the
        worker's fetch is answered from the HTTP cache (the file is immutable)."""
        links = b""
        for wasm in sorted(self.dist.glob("*.wasm")):
            if HTJ2K_DECODER in wasm.read_bytes():
                href = (self.prefix + wasm.name).encode()
                links += b'<link rel="preload" href="' + href + b'" as="fetch" type="application/wasm" crossorigin>'
        return links

    def compress_all(self, *, wait: bool = False) -> int:
        """Write the missing brotli and gzip copies, smallest files first (the page's own files are small).

        Returns how many files it compressed. Another process on it already (a worker of this server,
        `make install`): returns 0 at once, or with `wait` when that one is done, then does what is left.
        """
        lock = self.folder / ".lock"
        with open(lock, "w") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # another worker of this server is on it
            todo = [a for a in self.assets.values() if a.copies and not all(p.is_file() for p in a.copies.values())]
            todo.sort(key=lambda a: a.path.stat().st_size)
            for asset in todo:
                data = asset.path.read_bytes()
                level = 11 if len(data) <= BROTLI_BEST_UP_TO else 9
                _write(asset.copies["gzip"], gzip.compress(data, 9, mtime=0))
                _write(asset.copies["br"], bytes(imagecodecs.brotli_encode(data, level=level)))
            if todo:
                log.info("OHIF: compressed %d file(s) into %s", len(todo), self.folder)
            return len(todo)

    def compress_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self._compress_logged, name="ohif-compress", daemon=True)
        thread.start()
        return thread

    def _compress_logged(self) -> None:
        try:
            self.compress_all()
        except OSError as exc:
            log.warning(
                "OHIF: cannot write compressed copies into %s (%s); serving files uncompressed", self.folder, exc
            )


def _fingerprint(dist: Path, prefix: str) -> str:
    """Names the cache folder after the build (index.html names every hashed bundle) and the prefix."""
    index = (dist / "index.html").read_bytes()
    return hashlib.sha256(index + b"\0" + prefix.encode()).hexdigest()[:16]


def _write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader never sees half a file (write beside, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
