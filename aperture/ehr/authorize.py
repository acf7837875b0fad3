"""`{base}/auth/authorize`: the browser side of SMART App Launch (standalone and EHR launch).

The app's authorization request arrives as a GET with its parameters in the query string. Authlib
validates it (`get_consent_grant`: client, exact redirect URI, response type, scope narrowed to the
registration, PKCE S256, OpenID nonce) and the sandbox adds SMART's own rules: `aud` must be the
sandbox's FHIR base, and a `launch` value must be one the EHR launch page made for this app. Errors
found before the redirect URI is known to be the client's are shown as a page, never redirected.

Then the user signs in, picks a patient if the app asked for one (`launch/patient`, or patient/
scopes) and may see several, and answers the consent screen; each of those pages posts back to the
same URL, so every step re-validates the original request, and the body holds only the answers
(with an anti-forgery value). An EHR launch binds the patient the launch was made for; if the app is
pre-approved by organisational policy, no consent screen is shown (zero-click). The code is issued
by Authlib with what the user granted.
"""

from __future__ import annotations

from urllib.parse import urlencode

from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from aperture.ehr.accounts import sign_in
from aperture.ehr.authorization import SandboxAuthorizationServer, StarletteAuthorizationRequest, urlencoded_form
from aperture.ehr.clients import Client
from aperture.ehr.consent import consent_items, granted_scopes
from aperture.ehr.launches import Launch, find_launch
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

    def run(self) -> Response:
        response = self._run()
        secure = self.config.base_url.startswith("https://")
        keep_csrf(response, self.csrf, secure=secure)
        if self.cookie is not None:
            set_session_cookie(response, self.cookie, secure=secure)
        return response

    def _run(self) -> Response:
        session = current_session(self.server.engine, self.request)
        user = self.directory.user(session.account) if session else None
        try:
            grant = self.server.get_consent_grant(self.oauth, end_user=user)
            launch = self._check_smart_rules(grant)
        except OAuth2Error as error:
            if getattr(error, "redirect_uri", None):
                return self.server.handle_error_response(self.oauth, error)  # type: ignore[no-any-return]
            return error_page("This app's request cannot be served", error.get_error_description() or error.error)
        client: Client = grant.request.client
        if self.request.method == "POST":
            if not csrf_ok(self.request, self.form.get("csrf")):  # type: ignore[arg-type]
                return error_page("Please start again", "This form has expired or did not come from this page.")
            if self.form.get("step") == "login":
                user, session = self._sign_in()
                if user is None or session is None:
                    return login_page(self.action, self.csrf, self._purpose(client), "Wrong user name or password.")
        if user is None or session is None:
            return login_page(self.action, self.csrf, self._purpose(client))
        if launch is not None and launch.account != user.login:
            return error_page("Not your launch", "This launch was started by another user; sign in as them.", 403)
        return self._decide(grant, client, user, session, launch)

    def _purpose(self, client: Client) -> str:
        return f"{client.name} asks to connect to your record. Sign in to continue."

    def _sign_in(self) -> tuple[User | None, Session | None]:
        login, password = str(self.form.get("username", "")), str(self.form.get("password", ""))
        user = sign_in(self.server.engine, self.directory, login, password)
        if user is None:
            return None, None
        self.cookie, session = start_session(self.server.engine, user.login)
        return user, session

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
            return self._issue(grant, user, session, patient, offered)  # zero-click: policy has approved the app
        if step == "consent" and self.form.get("decision") == "allow":
            granted = granted_scopes(offered, [s for s in self.form.getlist("scope") if isinstance(s, str)])
            return self._issue(grant, user, session, patient, granted)
        if step == "consent":
            error = AccessDeniedError(redirect_uri=grant.redirect_uri, state=grant.request.payload.state)
            return self._after_post(self.server.handle_error_response(self.oauth, error))
        return consent_page(self.action, self.csrf, client.name, patient, consent_items(offered))

    def _issue(
        self, grant: AuthorizationCodeGrant, user: User, session: Session, patient: Patient | None, scopes: list[str]
    ) -> Response:
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
