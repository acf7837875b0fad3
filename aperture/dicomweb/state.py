"""Typed access to what the server's lifespan keeps on `app.state`.

`app.state` is untyped, so a store call made through it would escape the type checker, and with it
the rule that every index read takes an `AccessScope`. Handlers reach the index through
`index_of` instead (`tests/test_architecture.py` checks that no other module reads it from
`app.state`).
"""

from __future__ import annotations

from starlette.requests import Request

from aperture.store.index import Index


def index_of(request: Request) -> Index:
    """The server's index, typed."""
    index: Index = request.app.state.index
    return index
