"""Where the instances come from: Aperture (or any DICOMweb server) with a bearer token, or a folder.

Both give `SourceInstance`s backed by a Part-10 file on disk, the bytes exactly as stored: a
DICOMweb source downloads each one with `Accept: application/dicom; transfer-syntax=*` into a
spool folder, so the senders never re-encode what they do not have to.

The seam for signing in: `DicomwebSource` takes any `httpx.Auth`. `BearerAuth` asks its token
provider for the token on every request, so a provider that refreshes (the SMART sign-in) plugs
in without changes here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import pydicom
from pydicom.errors import InvalidDicomError

AS_STORED = "application/dicom; transfer-syntax=*"
QIDO_PAGE = 500


@dataclass(frozen=True)
class SourceInstance:
    study: str
    series: str
    sop_instance: str
    sop_class: str
    transfer_syntax: str
    path: Path  # a complete Part-10 file, as stored at the source
    origin: str | None = None  # the file a folder source read


class SourceError(Exception):
    """The source cannot be read (unreachable, refuses the token, not a DICOMweb server); says which and why."""


class Source(Protocol):
    def studies(self) -> list[str]:
        """Study Instance UIDs to send."""
        ...

    def instances(self, study: str, spool: Path) -> Iterator[SourceInstance]:
        """The study's instances, each one a file on disk (downloaded into `spool` when remote)."""
        ...


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer` with the token the provider returns now (providers may refresh)."""

    def __init__(self, token: Callable[[], str]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token()}"
        yield request


def part10_header(path: Path) -> tuple[str, str, str, str, str] | None:
    """(study, series, SOP instance, SOP class, transfer syntax) of a Part-10 file; None if it is not one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, AttributeError, EOFError):
        return None
    meta = ds.get("file_meta") or pydicom.dataset.FileMetaDataset()
    # the data set's UIDs first: they are what a receiver stores (some files' file meta disagrees)
    sop_class = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or "")
    sop = str(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID") or "")
    ts = str(meta.get("TransferSyntaxUID") or "")
    study = str(ds.get("StudyInstanceUID") or "")
    if (
        not (sop_class and sop and ts and study) or sop_class == "1.2.840.10008.1.3.10"
    ):  # DICOMDIR is media, not an instance
        return None
    return study, str(ds.get("SeriesInstanceUID") or ""), sop, sop_class, ts


class FolderSource:
    """Every Part-10 file under a folder (a PDI download, an export); other files are ignored and counted."""

    def __init__(self, folder: Path, studies: list[str] | None = None) -> None:
        if not folder.is_dir():
            raise SourceError(f"{folder} is not a folder")
        self.folder = folder
        self.ignored: list[Path] = []
        self._by_study: dict[str, list[SourceInstance]] = {}
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                header = part10_header(path)
                if header is None:
                    self.ignored.append(path)
                    continue
                study, series, sop, sop_class, ts = header
                instance = SourceInstance(study, series, sop, sop_class, ts, path, origin=str(path))
                self._by_study.setdefault(study, []).append(instance)
        self._wanted = studies

    def studies(self) -> list[str]:
        if self._wanted is None:
            return list(self._by_study)
        missing = [uid for uid in self._wanted if uid not in self._by_study]
        if missing:
            raise SourceError(f"{self.folder} holds no instance of study {', '.join(missing)}")
        return list(self._wanted)

    def instances(self, study: str, spool: Path) -> Iterator[SourceInstance]:
        yield from self._by_study.get(study, [])


class DicomwebSource:
    """A DICOMweb server (Aperture): QIDO-RS to list, WADO-RS to fetch each instance as stored."""

    def __init__(self, base_url: str, auth: httpx.Auth | None = None, studies: list[str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.http = httpx.Client(auth=auth, timeout=httpx.Timeout(60, connect=10), follow_redirects=False)
        self._wanted = studies

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, **kwargs: object) -> httpx.Response:
        url = f"{self.base}{path}"
        try:
            response = self.http.get(url, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise SourceError(f"cannot reach the source {self.base}: {exc}") from exc
        if response.status_code in (401, 403):
            raise SourceError(
                f"the source answered {response.status_code} to {path.split('?')[0]}: "
                "the token is missing, expired or does not reach this study (sign in again)"
            )
        if response.status_code >= 400:
            raise SourceError(
                f"the source answered {response.status_code} to {path.split('?')[0]}: {response.text[:200]}"
            )
        return response

    def _qido(self, path: str, params: dict[str, str]) -> list[dict[str, object]]:
        found: list[dict[str, object]] = []
        offset = 0
        while True:
            response = self._get(path, params={**params, "limit": str(QIDO_PAGE), "offset": str(offset)},
                                 headers={"Accept": "application/dicom+json"})  # fmt: skip
            page = response.json() if response.status_code == 200 and response.content else []
            found.extend(page)
            if len(page) < QIDO_PAGE and "Warning" not in response.headers:
                return found
            if not page:
                return found
            offset += len(page)

    def studies(self) -> list[str]:
        if self._wanted is not None:
            return list(self._wanted)
        return [_value(item, "0020000D") for item in self._qido("/studies", {})]

    def instances(self, study: str, spool: Path) -> Iterator[SourceInstance]:
        listed = self._qido(f"/studies/{study}/instances", {"includefield": "0020000E"})
        if not listed:
            raise SourceError(f"the source has no instance of study {study} (or the token does not reach it)")
        for item in listed:
            series, sop = _value(item, "0020000E"), _value(item, "00080018")
            path = spool / f"{sop}.dcm"
            url = f"{self.base}/studies/{study}/series/{series}/instances/{sop}"
            try:
                with self.http.stream("GET", url, headers={"Accept": AS_STORED}) as response:
                    if response.status_code != 200:
                        response.read()
                        raise SourceError(f"the source answered {response.status_code} for instance {sop}")
                    with open(path, "wb") as out:
                        for chunk in response.iter_bytes(1 << 20):
                            out.write(chunk)
            except httpx.TransportError as exc:
                raise SourceError(f"cannot fetch instance {sop} from the source: {exc}") from exc
            header = part10_header(path)
            if header is None:
                raise SourceError(f"the source sent instance {sop} as something that is not a Part-10 file")
            _, _, _, sop_class, ts = header
            yield SourceInstance(study, series, sop, sop_class, ts, path)


def _value(item: dict[str, object], tag: str) -> str:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    if not isinstance(values, list) or not values:
        raise SourceError(f"the source's QIDO-RS answer lacks ({tag[:4]},{tag[4:]})")
    return str(values[0])
