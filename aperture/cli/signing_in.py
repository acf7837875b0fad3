"""The sign-in options `aperture download` and `aperture transmit` share, and the sign-in they ask for.

A person signs in in the browser as a native app (RFC 8252, PKCE); a service signs in with SMART
Backend Services (`--key`, `--patient`). Both end in one `Session` (aperture.clients.signin).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import httpx

from aperture.clients import CLI_CLIENT_ID
from aperture.clients.signin import Session


def add_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """`--issuer`, `--client-id`, `--key`, `--patient`, `--scope`, `--no-browser`, `--imaging-fhir`."""
    parser.add_argument("--issuer", required=required, help="the EHR's FHIR base URL (its SMART issuer)")
    parser.add_argument("--client-id", default=CLI_CLIENT_ID, help=f"registered client id (default {CLI_CLIENT_ID})")
    parser.add_argument("--key", type=Path, help="Backend Services: the client's private key (JWK, JWK Set or PEM)")
    parser.add_argument("--patient", help="Backend Services: the patient's FHIR id")
    parser.add_argument("--scope", help="scopes to ask for (default: patient/ImagingStudy.rs, or system/ with --key)")
    parser.add_argument("--no-browser", action="store_true", help="print the sign-in URL instead of opening it")
    parser.add_argument("--imaging-fhir", help="the imaging FHIR base, when the EHR does not name it")


def problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the sign-in options, before anything is sent."""
    if (args.key is None) != (args.patient is None):
        return "Backend Services needs both --key and --patient"
    return None


def sign_in(args: argparse.Namespace, http: httpx.Client) -> Session:
    """Discovery, then the browser flow or Backend Services; raises ApertureError with the reason."""
    from aperture.clients import signin

    config = signin.discover(args.issuer, http)
    if args.key is not None:
        key = signin.load_private_key(args.key)
        session = signin.sign_in_backend(
            config, http, client_id=args.client_id, key=key, scope=args.scope or signin.SYSTEM_SCOPE
        )
        session.patient = args.patient
    else:
        session = signin.sign_in_browser(
            config, http, client_id=args.client_id, scope=args.scope or signin.PATIENT_SCOPE,
            open_browser=not args.no_browser, announce=lambda text: print(text, flush=True),
        )  # fmt: skip
    if args.imaging_fhir:
        session.imaging_endpoints = (args.imaging_fhir.rstrip("/"),)
    return session
