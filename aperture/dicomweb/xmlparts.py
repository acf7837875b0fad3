"""DICOM XML answers for `/metadata` and QIDO-RS: one Native DICOM Model document per instance or result.

PS3.18 §8.7.3.2, Table 10.4.4-1 and §10.6.3.3: `multipart/related; type="application/dicom+xml"`,
each part `Content-Type: application/dicom+xml` holding one instance's (or one match's) data set.
The stored JSON documents get the public base URL put in, then `aperture.dicom.nativexml` writes
each as XML. A search with no match answers an empty body: a multipart body needs at least one part
(RFC 2046 §5.1.1), and PS3.18 says of the XML answer of the UPS-RS search (2019a §6.9.3.3.3, the
one place it speaks of an XML answer without matches) that the body shall then be empty.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import Request

from aperture.dicom.nativexml import native_xml
from aperture.dicomweb import multipart
from aperture.dicomweb.media import DICOM_XML
from aperture.dicomweb.urls import public_base, with_base


def xml_documents(documents: list[bytes], request: Request) -> list[bytes]:
    """Each stored DICOM JSON document, with the public base URL in, as a Native DICOM Model document."""
    return [document for document, _ in xml_metadata_documents(documents, request, locations=False)]


def xml_metadata_documents(
    documents: list[bytes], request: Request, *, locations: bool = True
) -> list[tuple[bytes, str | None]]:
    """As `xml_documents`, each with the URL of the Instance Metadata resource it represents.

    PS3.18 §8.6.1.2 (Table 8.6.1-1) wants a Content-Location on a part that holds a representation
    of a resource; an instance's metadata is one (§10.4.1.1.2). The URL is made from the data set's
    own Study, Series and SOP Instance UIDs; None where one is missing.
    """
    if not documents:
        return []
    datasets = json.loads(with_base(b"[" + b",".join(documents) + b"]", request))
    base = public_base(request) if locations else ""
    return [(native_xml(dataset), _metadata_url(base, dataset) if locations else None) for dataset in datasets]


def _metadata_url(base: str, dataset: dict[str, Any]) -> str | None:
    uids = []
    for tag in ("0020000D", "0020000E", "00080018"):
        values = dataset.get(tag, {}).get("Value") or [None]
        if not isinstance(values[0], str):
            return None
        uids.append(values[0])
    study, series, sop = uids
    return f"{base}/studies/{study}/series/{series}/instances/{sop}/metadata"


def xml_multipart(
    documents: list[bytes], boundary: str | None = None, locations: list[str | None] | None = None
) -> tuple[bytes, str]:
    """(body, Content-Type) of the XML documents as multipart/related; an empty body for none.

    Without a `boundary` one is derived from the documents, so the same answer is the same bytes
    (and a hash of the parts cannot occur inside them). `locations`, when given, are the parts'
    Content-Location values, in order.
    """
    if boundary is None:
        digest = hashlib.blake2b(digest_size=16)
        for document in documents:
            digest.update(document)
        boundary = "aperture-" + digest.hexdigest()
    content_type = multipart.content_type(boundary, DICOM_XML)
    if not documents:
        return b"", content_type
    pieces = []
    for number, document in enumerate(documents):
        where = locations[number] if locations is not None else None
        pieces.append(multipart.part_header(boundary, DICOM_XML, first=number == 0, location=where))
        pieces.append(document)
    pieces.append(multipart.closing(boundary))
    return b"".join(pieces), content_type
