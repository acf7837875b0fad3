"""The searchset Bundle: matches, the Endpoint they reference on the same page, self and next links.

R4 Bundle rules followed: `type` searchset, `total` = all matches (not the page), every entry with
an absolute `fullUrl` and `search.mode` (`match`, or `include` for the Endpoint). The IG requires the
Endpoint on the same page as every study referencing it, with or without `_include` (profiles page,
"Endpoint placement"), so it is included whenever a match references it. `next` carries a keyset
cursor (`_page_after`), so following it returns each match once even while studies arrive.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aperture.fhir.imagingstudy import instant


def searchset(
    base: str,
    studies: list[tuple[int, dict[str, Any]]],
    total: int,
    endpoint: dict[str, Any],
    applied: tuple[tuple[str, str], ...],
    *,
    has_next: bool,
    after_pk: int | None,
    now: int,
) -> dict[str, Any]:
    """`studies` are (index pk, resource) in order; the last pk is the next page's cursor."""
    query = list(applied)
    self_query = query + ([("_page_after", str(after_pk))] if after_pk is not None else [])
    links = [{"relation": "self", "url": f"{base}/ImagingStudy?{urlencode(self_query)}"}]
    if has_next and studies:
        links.append(
            {
                "relation": "next",
                "url": f"{base}/ImagingStudy?{urlencode(query + [('_page_after', str(studies[-1][0]))])}",
            }
        )
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/ImagingStudy/{resource['id']}", "resource": resource, "search": {"mode": "match"}}
        for _, resource in studies
    ]
    if any("endpoint" in resource for _, resource in studies):
        entries.append(
            {"fullUrl": f"{base}/Endpoint/{endpoint['id']}", "resource": endpoint, "search": {"mode": "include"}}
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": instant(now)},
        "type": "searchset",
        "total": total,
        "link": links,
    }
    if entries:
        bundle["entry"] = entries
    return bundle
