// The sample SMART Imaging Access app (docs/sample-app.md): plain JavaScript, no dependencies, no build step.
//
// config.json, beside these files: the one EHR the app trusts (`issuer`, its FHIR base) and the app's
// `clientId` there. The imaging server writes it when it serves the app (its own EHR, the demo's
// registration); served from anywhere else, the app needs only that file changed.
// launch.html: SMART App Launch 2.2 EHR launch (`iss` and `launch` in the query) or standalone launch (no
// `launch`): discovery at {iss}/.well-known/smart-configuration, then the authorization code grant with
// PKCE (RFC 7636, S256 only) and `state`, `aud` = iss. A launch from another `iss` than the configured
// issuer is refused, so no token goes anywhere else.
// index.html (the redirect URI): checks `state` and RFC 9207 `iss`, drops the code from the address bar,
// exchanges it as a public client (client_id, no secret), keeps the token in sessionStorage only and never
// logs it; then reads the patient's allergies, conditions and medications from the EHR (the searches a
// clinical app runs on start-up), and lists the patient's ImagingStudy resources from the imaging FHIR base
// the EHR's discovery names in `associated_endpoints`, with a preview (the study thumbnail, drawn on a
// canvas) and a zip download per study from the WADO-RS Endpoint.
"use strict";

const IMAGING_ACCESS = "smart-imaging-access"; // the associated_endpoints capability of an imaging FHIR base
const PENDING = "aperture-sample.pending"; // sessionStorage: the authorization request in flight
const SESSION = "aperture-sample.session"; // sessionStorage: the token and its context
const MAX_PAGES = 20; // `next` links followed at most
const FHIR_JSON = "application/fhir+json";
// What the app reads at the EHR besides the patient, and how to name one record of each type.
// The current ones only, as clinical apps commonly ask (US Core: clinical-status for allergies and conditions).
const CLINICAL = [
  { type: "AllergyIntolerance", heading: "Allergies", filter: { "clinical-status": "active" }, name: (r) => r.code },
  { type: "Condition", heading: "Conditions", filter: { "clinical-status": "active" }, name: (r) => r.code },
  { type: "MedicationRequest", heading: "Medications", filter: { status: "active" },
    name: (r) => r.medicationCodeableConcept },
];
const SCOPES = ["patient/Patient.rs", "patient/ImagingStudy.rs", ...CLINICAL.map((c) => `patient/${c.type}.rs`)];

class AppError extends Error {}

const $ = (id) => document.getElementById(id);
const trimmed = (url) => String(url || "").replace(/\/+$/, "");

function say(text) {
  $("status").textContent = text;
}

function fail(error) {
  const box = $("error");
  box.textContent = error instanceof AppError ? error.message : `Something went wrong: ${error.message}`;
  box.hidden = false;
  say("");
  document.body.dataset.state = "error";
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

const randomText = (bytes) => base64url(crypto.getRandomValues(new Uint8Array(bytes)));

function checkedUrl(value, what) {
  let url;
  try {
    url = new URL(value);
  } catch {
    throw new AppError(`${what} is not a URL: ${String(value).slice(0, 100)}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new AppError(`${what} is not an http(s) URL.`);
  return url.href;
}

const MEANINGS = {
  400: "the request was refused as malformed",
  401: "the sign-in was not accepted (it may have expired): sign in again",
  403: "access was refused for this sign-in",
  404: "not found",
  406: "the server cannot answer in the format asked",
  503: "the server is unavailable right now (it may not reach the EHR): try again in a moment",
};

// A failed answer as a sentence: what was tried, what the status means, and the server's own explanation
// (OAuth error_description, FHIR OperationOutcome diagnostics, or Aperture's JSON error detail).
async function httpError(response, what) {
  let detail = "";
  try {
    const body = await response.json();
    detail = body.error_description || body.issue?.[0]?.diagnostics || body.detail || body.message || body.error || "";
  } catch {
    // not JSON: the status says enough
  }
  const meaning = MEANINGS[response.status] || "the request failed";
  return new AppError(`${what}: ${meaning} (HTTP ${response.status})${detail ? `. ${detail}` : "."}`);
}

async function request(url, what, { token, accept = "application/json", method = "GET", body } = {}) {
  const headers = { Accept: accept };
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, { method, headers, body, cache: "no-store" });
  } catch {
    throw new AppError(`${what}: ${new URL(url).origin} could not be reached (is it running, does it allow this origin?).`);
  }
  if (!response.ok) throw await httpError(response, what);
  return response;
}

const getJson = async (url, what, options) => (await request(url, what, options)).json();

function imagingBase(smart) {
  const entry = (smart.associated_endpoints || []).find((e) => (e.capabilities || []).includes(IMAGING_ACCESS));
  if (!entry) throw new AppError(`The EHR's SMART configuration names no imaging server (${IMAGING_ACCESS}).`);
  return trimmed(checkedUrl(entry.url, "The imaging FHIR base"));
}

// --- launch.html ------------------------------------------------------------------------------------------

// config.json: { "issuer": the EHR's FHIR base, "clientId": this app's registration there }.
async function appConfig() {
  const config = await getJson(new URL("config.json", location.href).href, "Reading the app's config.json");
  if (!config.issuer) throw new AppError("The app's config.json names no EHR (issuer): it cannot sign in anywhere.");
  if (!config.clientId) throw new AppError("The app's config.json has no clientId (the app's registration at the EHR).");
  return { issuer: trimmed(checkedUrl(config.issuer, "The configured issuer")), clientId: String(config.clientId) };
}

async function launch() {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new AppError("This app needs a secure context for PKCE: https, or http on localhost or 127.0.0.1.");
  }
  const params = new URLSearchParams(location.search);
  const launchValue = params.get("launch");
  const { issuer, clientId } = await appConfig();
  const iss = trimmed(params.get("iss") || issuer);
  if (iss !== issuer) {
    throw new AppError(`This app was launched by ${iss}, but it is set up for ${issuer} only: not signing in.`);
  }
  const smart = await getJson(`${iss}/.well-known/smart-configuration`, "The EHR's SMART configuration");
  if (!(smart.code_challenge_methods_supported || []).includes("S256")) {
    throw new AppError("The EHR does not offer PKCE with S256, which this app requires.");
  }
  const verifier = randomText(32);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = randomText(16);
  const redirectUri = new URL("./", location.href).href;
  const context = launchValue === null ? "launch/patient" : "launch"; // standalone: the EHR asks for a patient
  const pending = {
    state, verifier, iss, redirectUri, clientId,
    tokenEndpoint: checkedUrl(smart.token_endpoint, "The EHR's token endpoint"),
    issInAnswer: smart.authorization_response_iss_parameter_supported === true,
    imaging: imagingBase(smart),
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const query = new URLSearchParams({
    response_type: "code", client_id: clientId, redirect_uri: redirectUri,
    scope: [context, ...SCOPES].join(" "), state, aud: iss,
    code_challenge: challenge, code_challenge_method: "S256",
  });
  if (launchValue !== null) query.set("launch", launchValue);
  say("Sending you to the EHR to sign in…");
  location.assign(`${checkedUrl(smart.authorization_endpoint, "The EHR's authorization endpoint")}?${query}`);
}

// --- index.html: the redirect URI -------------------------------------------------------------------------

async function callback() {
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(SESSION);
    location.replace("./");
  });
  const params = new URLSearchParams(location.search);
  if (params.has("code") || params.has("error")) {
    history.replaceState(null, "", location.pathname); // the code leaves the address bar and the history
    const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
    sessionStorage.removeItem(PENDING);
    if (!pending || params.get("state") !== pending.state) {
      throw new AppError("This sign-in answer does not belong to a sign-in this page started (state differs).");
    }
    if (params.has("iss") ? trimmed(params.get("iss")) !== pending.iss : pending.issInAnswer) {
      throw new AppError("This sign-in answer does not come from the EHR the app asked (RFC 9207 iss differs).");
    }
    if (params.has("error")) {
      throw new AppError(`The EHR did not grant access: ${params.get("error_description") || params.get("error")}.`);
    }
    await exchange(pending, params.get("code"));
  }
  const session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  if (!session) {
    say("Not signed in.");
    $("launch").textContent = "Sign in at the EHR";
    document.body.dataset.state = "signed-out";
    return;
  }
  if (Date.now() >= session.expiresAt) {
    sessionStorage.removeItem(SESSION);
    throw new AppError("The sign-in has expired: sign in again.");
  }
  $("sign-out").hidden = false;
  await showPatient(session);
  await showClinical(session);
  await listStudies(session);
}

async function exchange(pending, code) {
  say("Signing in…");
  const body = new URLSearchParams({
    grant_type: "authorization_code", code, redirect_uri: pending.redirectUri,
    client_id: pending.clientId, code_verifier: pending.verifier,
  });
  const answer = await getJson(pending.tokenEndpoint, "Exchanging the sign-in code at the EHR", { method: "POST", body });
  if (!answer.access_token || !answer.patient) {
    throw new AppError("The EHR's token answer has no access token or no patient; this app needs a patient.");
  }
  const session = {
    token: answer.access_token, patient: answer.patient, iss: pending.iss, imaging: pending.imaging,
    expiresAt: Date.now() + 1000 * (Number(answer.expires_in) || 300),
  };
  sessionStorage.setItem(SESSION, JSON.stringify(session));
}

async function showPatient(session) {
  const line = $("patient");
  line.textContent = `Patient ${session.patient}`;
  try {
    const url = `${session.iss}/Patient/${encodeURIComponent(session.patient)}`;
    const patient = await getJson(url, "Reading the patient at the EHR", { token: session.token, accept: FHIR_JSON });
    const name = patient.name?.[0] || {};
    const shown = [...(name.given || []), name.family].filter(Boolean).join(" ");
    if (shown) line.textContent = `Patient: ${shown} (${session.patient})`;
  } catch (error) {
    line.textContent += ` (name not shown: ${error.message})`;
  }
}

// The start-up searches of a clinical app, one per type, each shown on its own: a type the EHR refuses (the user
// did not allow it) is said in its list, and the imaging part goes on.
async function showClinical(session) {
  const panel = $("clinical");
  panel.replaceChildren();
  await Promise.all(CLINICAL.map(async ({ type, heading, filter, name }) => {
    const section = document.createElement("section");
    section.dataset.type = type;
    const title = document.createElement("h3");
    title.textContent = heading;
    const list = document.createElement("ul");
    section.append(title, list);
    panel.append(section);
    const query = new URLSearchParams({ ...filter, patient: `Patient/${session.patient}`, _count: "50" });
    try {
      const bundle = await getJson(`${session.iss}/${type}?${query}`, `Reading ${heading.toLowerCase()} at the EHR`,
        { token: session.token, accept: FHIR_JSON });
      const found = (bundle.entry || []).map((e) => e.resource || {}).filter((r) => r.resourceType === type);
      for (const resource of found) {
        const concept = name(resource) || {};
        const item = document.createElement("li");
        item.textContent = concept.text || concept.coding?.[0]?.display || concept.coding?.[0]?.code || `${type}/${resource.id}`;
        list.append(item);
      }
      if (!found.length) list.append(Object.assign(document.createElement("li"), { textContent: "None active." }));
      section.dataset.state = "ready";
    } catch (error) {
      list.append(Object.assign(document.createElement("li"), { textContent: error.message }));
      section.dataset.state = "error";
    }
  }));
  panel.hidden = false;
}

function studyUid(study) {
  const id = (study.identifier || []).find((i) => String(i.value || "").startsWith("urn:oid:"));
  return id ? id.value.slice("urn:oid:".length) : study.id;
}

async function listStudies(session) {
  say("Loading the patient's imaging studies…");
  const query = new URLSearchParams({ patient: session.patient, _include: "ImagingStudy:endpoint" });
  let url = `${session.imaging}/ImagingStudy?${query}`;
  const studies = [];
  const endpoints = new Map();
  for (let page = 0; url && page < MAX_PAGES; page++) {
    const bundle = await getJson(url, "Searching the imaging server", { token: session.token, accept: FHIR_JSON });
    for (const entry of bundle.entry || []) {
      const resource = entry.resource || {};
      if (resource.resourceType === "Endpoint") endpoints.set(new URL(entry.fullUrl).href, resource);
      if (resource.resourceType === "ImagingStudy") studies.push({ resource, fullUrl: entry.fullUrl });
    }
    url = (bundle.link || []).find((link) => link.relation === "next")?.url;
    if (url && !url.startsWith(`${session.imaging}/`)) url = null; // the token goes to the imaging server only
  }
  const body = $("studies").tBodies[0];
  body.replaceChildren();
  for (const { resource, fullUrl } of studies) {
    const reference = resource.endpoint?.[0]?.reference;
    const endpoint = reference ? endpoints.get(new URL(reference, fullUrl).href) : undefined;
    const address = endpoint?.address ? trimmed(checkedUrl(endpoint.address, "The WADO-RS endpoint")) : null;
    body.append(studyRow(session, resource, address));
  }
  $("studies").hidden = studies.length === 0;
  say(studies.length ? `${studies.length} imaging ${studies.length === 1 ? "study" : "studies"}.` : "No imaging studies.");
  document.body.dataset.state = "ready";
}

function cell(row, text) {
  const td = row.insertCell();
  td.textContent = text ?? "";
  return td;
}

function studyRow(session, study, address) {
  const uid = studyUid(study);
  const label = study.description || `study ${uid}`;
  const row = document.createElement("tr");
  row.dataset.studyUid = uid;
  cell(row, study.started);
  cell(row, (study.modality || []).map((coding) => coding.code).join(", "));
  cell(row, study.description || "(no description)");
  cell(row, study.numberOfSeries);
  cell(row, study.numberOfInstances);
  const preview = cell(row, "");
  const action = cell(row, "");
  if (!address) {
    preview.textContent = action.textContent = "Not retrievable";
    return row;
  }
  showThumbnail(session, `${address}/studies/${encodeURIComponent(uid)}`, preview, label);
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Download zip";
  button.setAttribute("aria-label", `Download zip: ${label}`);
  button.addEventListener("click", () => download(session, button, `${address}/studies/${encodeURIComponent(uid)}`, uid, label));
  action.append(button);
  return row;
}

// The Study Thumbnail (PS3.18 §10.4.1.1.4; the server picks the image). An <img> cannot send the Authorization
// header: the thumbnail is fetched with the token, decoded, and drawn on a canvas.
async function showThumbnail(session, study, place, label) {
  place.textContent = "Loading…";
  try {
    const response = await request(`${study}/thumbnail`, `The preview of ${label}`, { token: session.token, accept: "image/jpeg" });
    const bitmap = await createImageBitmap(await response.blob());
    const canvas = document.createElement("canvas");
    canvas.className = "preview";
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `Preview of ${label}`);
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    bitmap.close();
    canvas.dataset.drawn = "true";
    place.replaceChildren(canvas);
  } catch (error) {
    place.textContent = error instanceof AppError ? error.message : "No preview.";
  }
}

// WADO-RS Retrieve Study (PS3.18 §10.4.1) as application/zip, an Aperture extension (docs/dicomweb.md), saved
// through a blob URL. The whole zip is held in memory: fine for an example, not for a large study.
async function download(session, button, study, uid, label) {
  button.disabled = true;
  say(`Downloading ${label}…`);
  try {
    const response = await request(study, `Downloading ${label}`, { token: session.token, accept: "application/zip" });
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `${uid}.zip`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    say(`Downloaded ${label} (${Math.ceil(blob.size / 1024)} KB).`);
  } catch (error) {
    fail(error);
  } finally {
    button.disabled = false;
  }
}

(document.body.dataset.page === "launch" ? launch : callback)().catch(fail);
