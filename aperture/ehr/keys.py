"""The sandbox's own signing key: made once, kept in `--data`, published as a JWK Set.

Resource servers and apps that verify what the sandbox signs (id_tokens, once the browser launch
lands) fetch the public half from `jwks_uri`. The private key file is created with mode 0600 in one
step (written to a private temporary file, then hard-linked into place), so it is never readable by
others, not even briefly, and two processes starting together end up with the same key. A key file
that others can read is refused rather than silently used.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from joserfc.jwk import RSAKey

from aperture.config import ConfigError

KEY_FILE = "signing-key.jwk.json"
# RS256: OpenID Connect's default id_token algorithm, which every OpenID Provider must offer and
# clients that register no `id_token_signed_response_alg` expect (OIDC Core 3.1.3.7, Discovery 3).
SIGNING_ALG = "RS256"


def load_or_create_signing_key(data: Path) -> RSAKey:
    path = data / KEY_FILE
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        key = RSAKey.generate_key(2048, parameters={"alg": SIGNING_ALG, "use": "sig"})
        key.ensure_kid()
        with tempfile.NamedTemporaryFile("w", dir=data, prefix=".key-", delete=False) as handle:
            os.fchmod(handle.fileno(), 0o600)
            json.dump(key.as_dict(private=True), handle)
        try:
            os.link(handle.name, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            os.unlink(handle.name)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"The signing key {path} is readable by others (mode {mode:04o}); run: chmod 600 {path}")
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["alg"] = SIGNING_ALG  # a key made by an earlier version was marked RS384: same key, today's algorithm
    return RSAKey.import_key(stored)


def public_jwks(key: RSAKey) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}
