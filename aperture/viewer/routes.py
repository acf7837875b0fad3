"""`/viewer/`: the prebuilt OHIF app served the way a CDN would, and its generated `app-config.js`.

- Exact names of the dist only (looked up in the table `ServedDist` made; no path is ever joined
  onto the file system, so nothing outside the dist is reachable, encoded or not).
- Brotli or gzip copies chosen by `Accept-Encoding` (`Vary: Accept-Encoding` on every file that has
  them), made once (aperture/viewer/dist.py).
- Names carrying a content hash: `Cache-Control: public, max-age=31536000, immutable`. Everything
  else (index.html, app-config.js, the few unhashed files): `no-cache` with a strong ETag, answered
  `304 Not Modified` when the browser already has it.
- Any other path without a file extension is one of OHIF's routes (`/viewer/viewer?StudyInstanceUIDs=…`):
  index.html, so deep links and reloads work; a missing asset is a 404, not a page.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from aperture.config import Config
from aperture.dicomweb.caching import not_modified_tag
from aperture.errors import NotFound
from aperture.viewer.dist import Asset, ServedDist
from aperture.viewer.ohif import app_config

log = logging.getLogger("aperture.viewer")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def viewer_prefix(config: Config) -> str:
    """`/viewer/` under the path of the public URL, if the server is published below one."""
    base = urlsplit(config.server.public_url).path.rstrip("/") if config.server.public_url else ""
    return f"{base}/viewer/"


def open_viewer(config: Config) -> ServedDist | None:
    """The served dist, rewritten for this server's prefix and compressing in the background; None
    (with one log line saying what to do) when OHIF is not there."""
    served = prepared_dist(config)
    if served is not None:
        served.compress_in_background()  # nothing to do once `make install` has compressed it
    return served


def prepared_dist(config: Config) -> ServedDist | None:
    """The dist rewritten for this server's prefix, in its cache folder; None (logged) when OHIF is not there."""
    dist = config.viewer.ohif_dist
    if not (dist / "index.html").is_file():
        log.warning(
            "OHIF is not at %s, so /viewer/ answers 404: run `make install` or set viewer.ohif_dist",
            dist,
        )
        return None
    cache = config.viewer.cache if str(config.viewer.cache) not in ("", ".") else dist.parent / "served"
    served = ServedDist(dist, cache, viewer_prefix(config))
    served.prepare()
    return served


def generated_config(config: Config) -> bytes:
    public = config.server.public_url.rstrip("/") if config.server.public_url else ""
    prefix = viewer_prefix(config)
    return app_config(
        f"{public}{prefix[: -len('viewer/')]}dicom-web",
        router_basename=prefix.rstrip("/"),
        bearer=config.server.auth != "none",
        progressive=config.viewer.progressive,
        thumbnails="thumbnail",  # the server's own small JPEGs, not a whole frame decoded per series
        one_context_on_cpu_gl=True,
    ).encode()


def _not_modified(request: Request, etag: str, headers: dict[str, str]) -> Response | None:
    tags = request.headers.get("if-none-match")
    if tags is not None and not_modified_tag(tags, etag):
        return Response(status_code=304, headers={**headers, "ETag": etag})
    return None


def _choose(request: Request, asset: Asset) -> tuple[str | None, str]:
    """The encoding to send (None: identity) and its ETag."""
    accepted = _accepted(request.headers.get("accept-encoding", ""))
    for encoding in ("br", "gzip"):
        if encoding in accepted and asset.encoded(encoding) is not None:
            return encoding, asset.etag[:-1] + f'-{encoding}"'
    return None, asset.etag


def _accepted(header: str) -> set[str]:
    names = set()
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            if float(q) > 0:
                names.add(name.strip().lower())
        except ValueError:
            continue
    return names


def serve_asset(request: Request, asset: Asset) -> Response:
    headers = {**COMMON, "Cache-Control": IMMUTABLE if asset.immutable else REVALIDATE}
    if asset.copies:
        headers["Vary"] = "Accept-Encoding"
    encoding, etag = _choose(request, asset)
    if (answer := _not_modified(request, etag, headers)) is not None:
        return answer
    headers["ETag"] = etag
    if encoding is None:
        return FileResponse(asset.path, media_type=asset.media_type, headers=headers)
    headers["Content-Encoding"] = encoding
    path = asset.encoded(encoding)
    assert path is not None
    return FileResponse(path, media_type=asset.media_type, headers=headers)


def _served(request: Request) -> ServedDist:
    served: ServedDist | None = request.app.state.viewer
    if served is None:
        dist = request.app.state.config.viewer.ohif_dist
        raise NotFound(
            f"The OHIF viewer is not installed on this server (looked in {dist}): run `make install`, "
            "or set viewer.ohif_dist to an unpacked @ohif/app dist/ folder."
        )
    return served


async def viewer_root(request: Request) -> Response:
    return RedirectResponse(viewer_prefix(request.app.state.config), status_code=308)


async def viewer_file(request: Request) -> Response:
    served = _served(request)
    name = request.path_params["path"]
    if name == "app-config.js":
        body = generated_config(request.app.state.config)
        etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
        headers = {**COMMON, "Cache-Control": REVALIDATE}
        if (answer := _not_modified(request, etag, headers)) is not None:
            return answer
        return Response(body, media_type="text/javascript; charset=utf-8", headers={**headers, "ETag": etag})
    asset = served.assets.get(name or "index.html")
    if asset is None:
        if PurePosixPath(name).suffix:
            raise NotFound(f"No file {name[:120]!r} in the OHIF viewer {served.dist.parent.name}.")
        asset = served.assets["index.html"]  # one of OHIF's own routes: the app routes it
    return serve_asset(request, asset)


routes = [
    Route("/viewer", viewer_root, methods=["GET", "HEAD"]),
    Route("/viewer/{path:path}", viewer_file, methods=["GET", "HEAD"]),
]
