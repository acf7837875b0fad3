"""`{base}/auth/authorize`: the browser side of SMART App Launch (standalone and EHR launch).

The app's authorization request arrives as a GET with its parameters in the query string. Authlib
validates it (`get_consent_grant`: client, exact redirect URI, response type, scope narrowed to the
registration, PKCE S256, OpenID nonce) and the sandbox adds SMART's own rules: `aud` must be the
sandbox's FHIR base, and a `launch` value must be one the EHR launch page made for this app and
not used by another authorization request (`aperture.ehr.launches`). Errors found before the
redirect URI is known to be the client's are shown as a page, never redirected. Every answer
redirected to the client, code or error, carries `iss` (RFC 9207), so an app talking to several
authorization servers can tell which one answered.

Then the user signs in, picks a patient if the app asked for one (`launch/patient`, or patient/
scopes) and may see several, and answers the consent screen; each of those pages posts back to the
same URL, so every step re-validates the original request, and the body holds only the answers
(with an anti-forgery value). An EHR launch binds the patient the launch was made for; if the app is
pre-approved by organisational policy, no consent screen is shown (zero-click); an app that
registered itself and is not approved yet gets a consent screen marking it as unverified. The code is
issued by Authlib with what the user granted. Sign-in goes through the throttle
(`aperture.ehr.accounts.attempt_sign_in`).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aperture.ehr.accounts import attempt_sign_in
from aperture.ehr.authorization import SandboxAuthorizationServer, StarletteAuthorizationRequest, urlencoded_form
from aperture.ehr.clients import Client
from aperture.ehr.consent import consent_items, granted_scopes
from aperture.ehr.launches import LAUNCH_USED, Launch, bind_launch, find_launch, spend_launch
from aperture.ehr.pages import consent_page, error_page, login_page, patient_picker
from aperture.ehr.people import Directory, Patient, User
from aperture.ehr.sessions import (
    Session,
    csrf_ok,
    csrf_token,
    current_session,
    keep_csrf,
    set_session_cookie,
    start_session,
)
from aperture.ehr.tokens import Grantee


async def authorize(request: Request) -> Response:
    form = await urlencoded_form(request) if request.method == "POST" else FormData()
    if request.method == "POST" and "response_type" in form and not request.url.query:
        # An app that POSTs its authorization request: the same request as a GET, so each step can repost it.
        return RedirectResponse(f"{request.url.path}?{urlencode(form.multi_items())}", status_code=303)
    return await run_in_threadpool(_Authorize(request, form).run)


def malformed_parameters(items: list[tuple[str, str]]) -> str | None:
    """Why an authorization request's parameters cannot be read, or None.

    RFC 6749 §3.1 forbids sending a parameter twice, and its values are printable text: a control
    character could not be echoed back in an error description (Authlib refuses to build one).
    """
    seen: set[str] = set()
    for name, value in items:
        if name in seen:
            return f"The parameter '{name[:40]}' is sent more than once; send each parameter once (RFC 6749 §3.1)."
        seen.add(name)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name + value):
            return f"The parameter {name[:40]!r} holds a control character; its value must be printable text."
    return None


class _Authorize:
    """One pass through the authorization endpoint (runs in a worker thread: Authlib and SQLite block)."""

    def __init__(self, request: Request, form: FormData) -> None:
        self.request = request
        self.form = form
        self.server: SandboxAuthorizationServer = request.app.state.authorization
        self.directory: Directory = request.app.state.directory
        self.config = self.server.config
        self.oauth = StarletteAuthorizationRequest(request)
        self.action = f"{request.url.path}?{request.url.query}"
        self.csrf = csrf_token(request)
        self.cookie: str | None = None  # a new session cookie to set on the answer
        self.retry_after = 0  # set when the throttle refused a sign-in

    def run(self) -> Response:
        response = self._with_issuer(self._run())
        secure = self.config.base_url.startswith("https://")
        keep_csrf(response, self.csrf, secure=secure)
        if self.cookie is not None:
            set_session_cookie(response, self.cookie, secure=secure)
        return response

    def _with_issuer(self, response: Response) -> Response:
        """RFC 9207: every redirect back to the client (all this endpoint's redirects are) names the issuer."""
        location = response.headers.get("location")
        if response.status_code in (302, 303) and location and "iss" not in parse_qs(urlsplit(location).query):
            response.headers["location"] = f"{location}{'&' if '?' in location else '?'}" + urlencode(
                {"iss": self.config.issuer}
            )
        return response

    def _run(self) -> Response:
        session = current_session(self.server.engine, self.request)
        user = self.directory.user(session.account) if session else None
        self.csrf = csrf_token(self.request, session)
        malformed = malformed_parameters(self.request.query_params.multi_items())
        if malformed:
            return error_page("This app's request cannot be served", malformed)
        try:
            grant = self.server.get_consent_grant(self.oauth, end_user=user)
            launch = self._check_smart_rules(grant)
        except OAuth2Error as error:
            if getattr(error, "redirect_uri", None):
                return self.server.handle_error_response(self.oauth, error)
            return error_page("This app's request cannot be served", error.get_error_description() or error.error)
        client: Client = grant.request.client
        if self.request.method == "POST":
            if not csrf_ok(self.request, self.form.get("csrf"), session):  # type: ignore[arg-type]
                return error_page("Please start again", "This form has expired or did not come from this page.")
            if self.form.get("step") == "login":
                user, session = self._sign_in()
                if user is None or session is None:
                    wrong = "Wrong user name or password."
                    return login_page(self.action, self.csrf, self._purpose(client), wrong, self.retry_after)
        if user is None or session is None:
            return login_page(self.action, self.csrf, self._purpose(client))
        if launch is not None and launch.account != user.login:
            return error_page("Not your launch", "This launch was started by another user; sign in as them.", 403)
        if launch is not None and not bind_launch(self.server.engine, launch, self._challenge(grant)):
            return self._launch_used(grant)
        return self._decide(grant, client, user, session, launch)

    def _challenge(self, grant: AuthorizationCodeGrant) -> str:
        return str(grant.request.payload.data.get("code_challenge", ""))

    def _launch_used(self, grant: AuthorizationCodeGrant) -> Response:
        error = InvalidRequestError(
            LAUNCH_USED,
            redirect_uri=grant.redirect_uri, state=grant.request.payload.state,
        )  # fmt: skip
        return self._after_post(self.server.handle_error_response(self.oauth, error))

    def _purpose(self, client: Client) -> str:
        return f"{client.name} asks to connect to your record. Sign in to continue."

    def _sign_in(self) -> tuple[User | None, Session | None]:
        login, password = str(self.form.get("username", "")), str(self.form.get("password", ""))
        attempt = attempt_sign_in(self.request, login, password)
        if attempt.user is None:
            self.retry_after = attempt.retry_after
            return None, None
        self.cookie, session = start_session(self.server.engine, attempt.user.login)
        self.csrf = session.csrf  # a new anti-forgery value from sign-in on
        return attempt.user, session

    def _check_smart_rules(self, grant: AuthorizationCodeGrant) -> Launch | None:
        """SMART's rules on top of OAuth: `aud` names this FHIR server; `launch` is this app's."""
        payload = grant.request.payload.data
        state = payload.get("state")
        aud = payload.get("aud", "")
        if aud.rstrip("/") != self.config.fhir_base:
            raise InvalidRequestError(
                f"'aud' must be this EHR's FHIR base, {self.config.fhir_base}", redirect_uri=grant.redirect_uri,
                state=state,
            )  # fmt: skip
        value = payload.get("launch")
        if value is None:
            return None
        launch = find_launch(self.server.engine, value)
        if launch is None or launch.client_id != grant.request.client.client_id:
            raise InvalidRequestError(
                "'launch' is unknown, expired, or was made for another app.", redirect_uri=grant.redirect_uri,
                state=state,
            )  # fmt: skip
        if not launch.serves(payload.get("code_challenge")):
            raise InvalidRequestError(
                LAUNCH_USED,
                redirect_uri=grant.redirect_uri, state=state,
            )  # fmt: skip
        return launch

    def _decide(
        self, grant: AuthorizationCodeGrant, client: Client, user: User, session: Session, launch: Launch | None
    ) -> Response:
        offered = (grant.request.scope or "").split()
        needs_patient = launch is None and (
            "launch/patient" in offered or any(s.startswith("patient/") for s in offered)
        )
        candidates = self.directory.patients_for(user)
        patient: Patient | None = None
        if launch is not None:
            patient = self.directory.patients.get(launch.patient)
        elif needs_patient:
            chosen = self.form.get("patient")
            if len(candidates) == 1:
                patient = candidates[0]
            elif isinstance(chosen, str) and self.directory.may_see(user, chosen):
                patient = self.directory.patients[chosen]
            elif not candidates:
                return error_page("No patient", f"{user.login} may not act for any patient.", 403)
            else:
                return patient_picker(self.action, self.csrf, client.name, candidates)
        step = self.form.get("step") if self.request.method == "POST" else None
        if launch is not None and client.pre_approved:
            return self._issue(grant, user, session, patient, offered, launch)  # zero-click: policy approved the app
        if step == "consent" and self.form.get("decision") == "allow":
            granted = granted_scopes(offered, [s for s in self.form.getlist("scope") if isinstance(s, str)])
            return self._issue(grant, user, session, patient, granted, launch)
        if step == "consent":
            if launch is not None and not spend_launch(self.server.engine, launch, self._challenge(grant)):
                return self._launch_used(grant)
            error = AccessDeniedError(redirect_uri=grant.redirect_uri, state=grant.request.payload.state)
            return self._after_post(self.server.handle_error_response(self.oauth, error))
        return consent_page(
            self.action, self.csrf, client.name, patient, consent_items(offered), unverified=not client.approved
        )

    def _issue(
        self, grant: AuthorizationCodeGrant, user: User, session: Session, patient: Patient | None, scopes: list[str],
        launch: Launch | None,
    ) -> Response:  # fmt: skip
        if launch is not None and not spend_launch(self.server.engine, launch, self._challenge(grant)):
            return self._launch_used(grant)  # a second answer to the same request (a double post, the back button)
        patient_id = patient.id if patient else None
        grantee = Grantee(
            account=user.login, user=self.directory.acting_as(user, patient_id), patient=patient_id,
            scope=" ".join(scopes), session_hash=session.session_hash, auth_time=session.auth_time,
        )  # fmt: skip
        response = self.server.create_authorization_response(self.oauth, grant_user=grantee, grant=grant)
        return self._after_post(response)

    def _after_post(self, response: Response) -> Response:
        """A redirect answering a form post is a 303, so the browser follows it with a GET."""
        if self.request.method == "POST" and response.status_code == 302:
            response.status_code = 303
        return response
