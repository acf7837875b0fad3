// Signing in at the EHR and staying signed in (SMART App Launch 2.2), for the app at /app/ (docs/view-download-transmit.md).
//
// One EHR is trusted: the `issuer` of config.json, which the imaging server writes (its own EHR). A launch
// from any other `iss` is refused before any redirect. Authorization code grant with PKCE (S256) and
// `state`; the answer's RFC 9207 `iss` is checked; the code leaves the address bar before it is exchanged.
// The session (tokens, patient, endpoints) lives in sessionStorage only: gone with the tab, never logged,
// never in a URL. Before the access token expires it is renewed with the refresh_token grant, and whoever
// listens (the open viewer windows) hears of the new one.
"use strict";

const PENDING = "aperture-app.pending"; // the authorization request in flight
const SESSION = "aperture-app.session"; // the signed-in session
const IMAGING_ACCESS = "smart-imaging-access"; // associated_endpoints capability of the imaging FHIR base
const RENEW_BEFORE = 60_000; // ms before expiry the token is renewed
export const SCOPES = ["patient/Patient.rs", "patient/ImagingStudy.rs", "patient/DiagnosticReport.rs", "online_access"];

export class AppError extends Error {}

export const withoutSlash = (url) => String(url || "").replace(/\/+$/, "");

export function httpUrl(value, what) {
  let url;
  try {
    url = new URL(value);
  } catch {
    throw new AppError(`${what} is not a URL: ${String(value).slice(0, 100)}`);
  }
  if (!["https:", "http:"].includes(url.protocol)) throw new AppError(`${what} is not an http(s) URL.`);
  return url.href;
}

// What a refusal means for the person using the app, by HTTP status.
const STATUS_WORDS = new Map([
  [400, "the request was refused as malformed"],
  [401, "your sign-in was not accepted (it may have expired): sign in again"],
  [403, "access was refused for this sign-in"],
  [404, "not found, or not yours to see"],
  [502, "the receiving system could not be reached"],
  [503, "the server is unavailable right now: try again in a moment"],
]);

// A failed answer in words, with the server's own explanation (OAuth, FHIR OperationOutcome or Aperture's JSON).
async function refusal(response, what) {
  const body = await response.json().catch(() => ({}));
  const said = [body.error_description, body.issue?.[0]?.diagnostics, body.message, body.error].find(Boolean);
  const words = STATUS_WORDS.get(response.status) || "the request failed";
  return Object.assign(new AppError(`${what}: ${words} (HTTP ${response.status})${said ? `. ${said}` : "."}`),
    { status: response.status });
}

/** fetch() with the token in the Authorization header only; a failure becomes an AppError in words. */
export async function call(url, what, { token, accept = "application/json", method = "GET", body, type, signal } = {}) {
  const headers = { Accept: accept };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (type) headers["Content-Type"] = type;
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal, cache: "no-store" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new AppError(`${what}: ${new URL(url).origin} could not be reached.`);
  }
  if (!response.ok) throw await refusal(response, what);
  return response;
}

export const json = async (url, what, options) => (await call(url, what, options)).json();

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

async function trustedEhr() {
  const config = await json(new URL("config.json", location.href).href, "Reading the app's config.json");
  if (!config.issuer) throw new AppError("This server names no EHR to sign in at (config.json has no issuer).");
  if (!config.clientId) throw new AppError("config.json has no clientId, the app's registration at the EHR.");
  return { issuer: withoutSlash(httpUrl(config.issuer, "The configured EHR")), clientId: String(config.clientId) };
}

/** Start signing in: an EHR launch when the EHR gave `iss` and `launch`, else a standalone launch. */
export async function signIn({ iss: asked, launch } = {}) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new AppError("Signing in needs a secure page: https, or http on localhost or 127.0.0.1.");
  }
  const { issuer, clientId } = await trustedEhr();
  const iss = withoutSlash(asked || issuer);
  if (iss !== issuer) throw new AppError(`This app was opened by ${iss}, but it signs in at ${issuer} only.`);
  const smart = await json(`${iss}/.well-known/smart-configuration`, "Asking the EHR how to sign in");
  if (!(smart.code_challenge_methods_supported || []).includes("S256")) {
    throw new AppError("The EHR does not offer PKCE with S256, which this app requires.");
  }
  const imaging = (smart.associated_endpoints || []).find((e) => (e.capabilities || []).includes(IMAGING_ACCESS));
  if (!imaging) throw new AppError(`The EHR names no imaging server (${IMAGING_ACCESS} in associated_endpoints).`);
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = base64url(crypto.getRandomValues(new Uint8Array(16)));
  const redirectUri = new URL("./", location.href).href;
  const pending = {
    state, verifier, iss, clientId, redirectUri,
    tokenEndpoint: httpUrl(smart.token_endpoint, "The EHR's token endpoint"),
    issInAnswer: smart.authorization_response_iss_parameter_supported === true,
    imaging: withoutSlash(httpUrl(imaging.url, "The imaging FHIR base")),
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const query = new URLSearchParams({
    response_type: "code", client_id: clientId, redirect_uri: redirectUri, state, aud: iss,
    scope: [launch ? "launch" : "launch/patient", ...SCOPES].join(" "),
    code_challenge: challenge, code_challenge_method: "S256",
  });
  if (launch) query.set("launch", launch);
  location.assign(`${httpUrl(smart.authorization_endpoint, "The EHR's authorization endpoint")}?${query}`);
}

function keep(session, answer) {
  Object.assign(session, {
    token: answer.access_token,
    refreshToken: answer.refresh_token || session.refreshToken || null,
    expiresAt: Date.now() + 1000 * (Number(answer.expires_in) || 300),
  });
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

/** On the redirect URI: finish a sign-in the query answers, if any. */
export async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return;
  history.replaceState(null, "", location.pathname); // the code leaves the address bar and the history
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  const mismatch = [
    [!pending || params.get("state") !== pending.state, "does not belong to a sign-in started here (its state differs)"],
    [params.has("iss") ? withoutSlash(params.get("iss")) !== pending?.iss : pending?.issInAnswer,
      "does not come from the EHR the app asked (its iss differs)"],
  ].find(([wrong]) => wrong);
  if (mismatch) throw new AppError(`This sign-in answer ${mismatch[1]}.`);
  if (params.has("error")) {
    throw new AppError(`The EHR did not grant access: ${params.get("error_description") || params.get("error")}.`);
  }
  const body = new URLSearchParams({
    grant_type: "authorization_code", code: params.get("code"), redirect_uri: pending.redirectUri,
    client_id: pending.clientId, code_verifier: pending.verifier,
  });
  const answer = await json(pending.tokenEndpoint, "Signing in at the EHR", { method: "POST", body });
  if (!answer.access_token || !answer.patient) throw new AppError("The EHR's answer names no patient; this app needs one.");
  const { iss, imaging, tokenEndpoint, clientId } = pending;
  keep({ iss, imaging, tokenEndpoint, clientId, patient: answer.patient }, answer);
}

/** The signed-in session of this tab, or null. */
export function currentSession() {
  const session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  if (session && Date.now() >= session.expiresAt && !session.refreshToken) {
    sessionStorage.removeItem(SESSION);
    return null;
  }
  return session;
}

export function signOut() {
  sessionStorage.removeItem(SESSION);
}

/** The refresh_token grant: a new access token (and a new refresh token: the sandbox rotates them). */
export async function renew(session) {
  const body = new URLSearchParams({
    grant_type: "refresh_token", refresh_token: session.refreshToken, client_id: session.clientId,
  });
  return keep(session, await json(session.tokenEndpoint, "Renewing your sign-in at the EHR", { method: "POST", body }));
}

/** Renew the token RENEW_BEFORE its expiry, again and again; `renewed(session)` or `failed(error)` after each try. */
export function keepFresh(session, { renewed, failed }) {
  let timer = null;
  const plan = () => {
    clearTimeout(timer);
    if (!session.refreshToken) return;
    timer = setTimeout(async () => {
      try {
        renewed(await renew(session));
        plan();
      } catch (error) {
        failed(error);
      }
    }, Math.max(1000, session.expiresAt - Date.now() - RENEW_BEFORE));
  };
  plan();
  return { now: async () => { renewed(await renew(session)); plan(); } };
}
