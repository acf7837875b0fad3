"""Errors that carry HTTP headers: the one mapping in aperture.server.handlers sends them."""

from __future__ import annotations

import asyncio

from starlette.requests import Request

from aperture.errors import AuthorizationServerUnavailable, InsufficientScope, InvalidToken, NotFound, Unauthorized
from aperture.server.handlers import aperture_error


def _answer(exc: Exception) -> tuple[int, dict[str, str]]:
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    response = asyncio.run(aperture_error(request, exc))
    return response.status_code, dict(response.headers)


def test_invalid_token_is_401_with_bearer_challenge() -> None:
    status, headers = _answer(InvalidToken())
    assert status == 401
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_insufficient_scope_is_403_with_bearer_challenge() -> None:
    status, headers = _answer(InsufficientScope())
    assert status == 403
    assert headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def test_unreachable_ehr_is_503_with_retry_after() -> None:
    status, headers = _answer(AuthorizationServerUnavailable(retry_after=7))
    assert status == 503
    assert headers["retry-after"] == "7"


def test_errors_without_headers_send_none_extra() -> None:
    status, headers = _answer(NotFound())
    assert status == 404
    assert "www-authenticate" not in headers and "retry-after" not in headers


def test_any_aperture_error_can_carry_headers() -> None:
    status, headers = _answer(Unauthorized("Sign in again.", headers={"WWW-Authenticate": "Bearer"}))
    assert status == 401 and headers["www-authenticate"] == "Bearer"
