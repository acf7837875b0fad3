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

from starlette.requests import Request

from aperture.dicom.nativexml import native_xml
from aperture.dicomweb import multipart
from aperture.dicomweb.media import DICOM_XML
from aperture.dicomweb.urls import with_base


def xml_documents(documents: list[bytes], request: Request) -> list[bytes]:
    """Each stored DICOM JSON document, with the public base URL in, as a Native DICOM Model document."""
    if not documents:
        return []
    datasets = json.loads(with_base(b"[" + b",".join(documents) + b"]", request))
    return [native_xml(dataset) for dataset in datasets]


def xml_multipart(documents: list[bytes], boundary: str | None = None) -> tuple[bytes, str]:
    """(body, Content-Type) of the XML documents as multipart/related; an empty body for none.

    Without a `boundary` one is derived from the documents, so the same answer is the same bytes
    (and a hash of the parts cannot occur inside them).
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
        pieces.append(multipart.part_header(boundary, DICOM_XML, first=number == 0))
        pieces.append(document)
    pieces.append(multipart.closing(boundary))
    return b"".join(pieces), content_type
