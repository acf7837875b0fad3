"""create_app(config): the imaging server's ASGI application.

Mounts DICOMweb at /dicom-web, the imaging FHIR endpoint at /fhir, health at /healthz, PDI media
zips at /media/, sending a study to a configured destination at /transmit, the sample SMART app's
static files at /apps/sample/, the app at /app/ with IHE Invoke Image Display, and the OHIF viewer
at /viewer/; the lifespan opens the store (engine with
migrations, blob folder with crash leftovers cleaned) and closes it, makes the per-worker
authorization parts (the introspection client, the audit recorder), and starts and stops the
background workers (HTJ2K copies, the ImagingStudy publisher). Nothing here handles a request.
The edge layers (trusted proxy headers, access log, CORS) wrap the whole Starlette stack, outside
its error middleware, so that even its 500 answers are logged and carry CORS headers.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from aperture import __version__
from aperture.audit.recorder import AuditRecorder
from aperture.audit.store import AuditStore
from aperture.auth.requirements import reads
from aperture.config import Config, ServerConfig
from aperture.dicomweb import wadouri
from aperture.dicomweb.lru import ByteCache, RecentValues
from aperture.dicomweb.routes import routes as dicomweb_routes
from aperture.fhir.publish import start_publisher
from aperture.fhir.routes import routes as fhir_routes
from aperture.lifecycle import die_with
from aperture.logs import AccessLog, quiet_warnings
from aperture.server import apps, media, transmit, webapp
from aperture.server.cors import CrossOrigin
from aperture.server.handlers import EXCEPTION_HANDLERS
from aperture.server.lingering import LingeringClose
from aperture.server.memory import tune_allocator
from aperture.server.proxy import ForwardedHeaders
from aperture.store.blobs import BlobStore
from aperture.store.copies import CopyWorker
from aperture.store.engine import open_engine
from aperture.store.index import Index
from aperture.store.ingest import Ingest, warm_up
from aperture.viewer import routes as viewer

log = logging.getLogger("aperture.server")
RENDER_HEADERS = 256  # parsed instance headers kept for redrawing (a few KB each)


class _ApertureApp(Starlette):
    """Starlette whose outermost layers are Aperture's edge middleware (Starlette puts its own
    `middleware=` inside ServerErrorMiddleware, too far in)."""

    def build_middleware_stack(self) -> ASGIApp:
        return edge_layers(super().build_middleware_stack(), self.state.config.server)


def edge_layers(app: ASGIApp, server: ServerConfig) -> ASGIApp:
    """Outermost first: proxy headers (so the log and URLs see the real client), access log, CORS,
    and the lingering close that lets a client read an early refusal of its upload."""
    app = LingeringClose(app)
    if server.cors_origins:
        app = CrossOrigin(app, server.cors_origins)
    app = AccessLog(app)
    if server.trusted_proxies:
        app = ForwardedHeaders(app, server.trusted_proxies)
    return app


async def healthz(request: Request) -> Response:
    """Liveness, plus how much background work is left (benchmarks and tests wait for it)."""
    answer: dict[str, object] = {"status": "ok", "version": __version__}
    copies = getattr(request.app.state, "copies", None)
    if copies is not None and request.query_params.get("background") == "1":
        answer["htj2k_pending"] = await asyncio.get_running_loop().run_in_executor(None, copies.pending)
    return JSONResponse(answer)


def parser_started(worker: int) -> None:
    """In each parser process: end when the worker it parses for ends, however that ends (a killed
    worker cannot shut its pool down), and keep pydicom's warnings about odd uploads out of the log."""
    die_with(worker)
    quiet_warnings()


def clean_temp(blobs: BlobStore) -> None:
    """Remove what uploads cut short by a crash left in `tmp/`: only while no upload can run."""
    leftovers = blobs.clean_temp()
    if leftovers:
        log.warning("removed %d partial upload(s) left by an earlier crash", leftovers)


def server_base(server: ServerConfig) -> str:
    """This server's base URI as audit events name it: the public URL, else where it listens."""
    return server.public_url.rstrip("/") if server.public_url else f"http://{server.host}:{server.port}"


def create_app(config: Config) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tune_allocator()
        config.store.path.mkdir(parents=True, exist_ok=True)
        blobs = BlobStore(config.store.path)
        if config.server.workers <= 1:  # with more, `aperture serve` cleans once before they start
            clean_temp(blobs)
        engine = open_engine(config.database_url)
        app.state.engine = engine
        app.state.blobs = blobs
        app.state.index = Index(engine)
        app.state.ingest = Ingest(engine, blobs, config.store.duplicate_policy)
        cache_bytes = config.dicomweb.rendered_cache_bytes
        app.state.rendered_cache = ByteCache(cache_bytes) if cache_bytes > 0 else None
        app.state.frame_cache = ByteCache(cache_bytes) if cache_bytes > 0 else None
        # a window/level drag redraws one instance many times: its header is parsed once
        app.state.render_headers = RecentValues(RENDER_HEADERS)
        app.state.parsers = ProcessPoolExecutor(
            max_workers=config.store.parser_processes or max(1, (os.cpu_count() or 2) - 1),
            mp_context=multiprocessing.get_context("forkserver"),
            initializer=parser_started,
            initargs=(os.getpid(),),
        )
        await asyncio.get_running_loop().run_in_executor(app.state.parsers, warm_up)
        app.state.copies = CopyWorker(engine, blobs) if config.store.htj2k_copies else None
        if app.state.copies is not None:
            app.state.copies.start()
        app.state.decisions = {}
        app.state.introspector = None
        app.state.patients = None
        # ImagingStudy to the EHR once a study is stable; None when off (in this process or any)
        app.state.publisher = start_publisher(config, app.state.index)
        if config.server.auth == "none":
            log.warning("--auth none: every request is allowed, with no authorization. Never expose this server.")
        else:
            from aperture.auth.backend import backend_configured
            from aperture.auth.introspection import Introspector
            from aperture.auth.patients import PatientDirectory

            app.state.introspector = Introspector(config.auth)
            if backend_configured(config.auth):  # for plain SMART EHRs: Patient/{id} read as this server
                app.state.patients = PatientDirectory(config.auth)
        audit_store = AuditStore(engine, server_base(config.server))
        app.state.audit = AuditRecorder(audit_store) if config.audit.enabled else None
        app.state.viewer = viewer.open_viewer(config)  # OHIF at /viewer/, None when not installed
        try:
            yield
        finally:
            if app.state.publisher is not None:
                await app.state.publisher.stop()
            if app.state.audit is not None:
                app.state.audit.close(timeout=10)
            if app.state.introspector is not None:
                await app.state.introspector.aclose()
            if app.state.patients is not None:
                await app.state.patients.aclose()
            if app.state.copies is not None:
                app.state.copies.stop()
            app.state.parsers.shutdown(wait=False, cancel_futures=True)
            blobs.close()
            engine.dispose()

    app = _ApertureApp(
        routes=[
            Route("/healthz", healthz),
            Mount("/dicom-web", routes=dicomweb_routes),
            Mount("/fhir", routes=fhir_routes),  # ImagingStudy for SMART Imaging Access (docs/fhir.md)
            # WADO-URI (PS3.18 §9) at the server root, where Orthanc serves it and viewers' links point
            Route("/wado", reads(wadouri.retrieve), methods=["GET"]),
            # PDI media, a zip streamed while it is built (docs/view-download-transmit.md); POST: RFC 6750 form token
            Route("/media/studies", media.reading(media.studies), methods=["GET", "POST"]),
            Route("/media/studies/{study}", media.reading(media.study), methods=["GET", "POST"]),
            # the app's Send to…: one study the token reaches, to a destination the operator configured
            Route("/transmit/destinations", reads(transmit.destinations), methods=["GET"]),
            Route("/transmit", transmit.sending(transmit.send), methods=["POST"]),
            *apps.routes,  # public: the sample SMART imaging app's static files (docs/sample-app.md)
            *webapp.routes,  # public: the app at /app/ and IHE Invoke Image Display (docs/view-download-transmit.md)
            *viewer.routes,  # public: OHIF's files (docs/view-download-transmit.md); its data takes the token
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.config = config
    return app
