// The app at /app/ (docs/view-download-transmit.md): a patient's imaging studies, with their reports, to view in the viewer
// (OHIF at /viewer/), preview as a grid of pictures, download as a DICOM media zip (IHE PDI), and send to another
// system the imaging server's operator configured (POST /transmit). Plain JavaScript modules, no build, nothing
// from another site.
//
// launch.html: the launch URL (EHR launch with `iss` and `launch`, or standalone), and where IHE Invoke Image
// Display requests arrive, checked by the server (aperture/viewer/iid.py). index.html: the redirect URI and the
// study list. An IID request: without a sign-in in this tab it signs in first, then opens the viewer on the
// studies asked for that the sign-in reaches, or says none are.
"use strict";

import { PreviewGrid } from "./grid.js";
import { AppError, currentSession, finishSignIn, httpUrl, json, keepFresh, signIn, signOut, withoutSlash } from "./smart.js";

const FHIR_JSON = "application/fhir+json";
const VIEWER_TOKEN = "aperture.viewer.token"; // sessionStorage: what the viewer at /viewer/ reads (and then hears)
const INVOKE = "aperture-app.invoke"; // sessionStorage: an IID request waiting for the sign-in
const INVOKE_WAITS = 600_000; // ms an IID request waits for its sign-in; a later sign-in shows the study list
const MAX_PAGES = 20; // `next` links followed at most
const $ = (id) => document.getElementById(id);
const viewers = []; // the viewer windows this page opened: each hears of every renewed token
let session = null;

const say = (text) => { $("status").textContent = text; };

function fail(error) {
  const text = error instanceof AppError ? error.message : `Something went wrong: ${error.message}`;
  Object.assign($("error"), { hidden: false, textContent: text });
  say("");
  document.body.dataset.state = "error";
}

const uidOf = (study) => {
  const id = (study.identifier || []).find((i) => String(i.value || "").startsWith("urn:oid:"));
  return id ? id.value.slice("urn:oid:".length) : null;
};

function accessionsOf(study) {
  const found = (study.basedOn || []).map((b) => b.identifier?.value);
  found.push(...(study.identifier || []).filter((i) => i.type?.coding?.some((c) => c.code === "ACSN")).map((i) => i.value));
  return found.filter(Boolean);
}

// --- signing in and staying signed in -------------------------------------------------------------------

function tellViewers() {
  const message = { type: VIEWER_TOKEN, accessToken: session.token, expiresAt: session.expiresAt };
  sessionStorage.setItem(VIEWER_TOKEN, JSON.stringify({ accessToken: session.token, expiresAt: session.expiresAt }));
  for (const viewer of viewers) if (!viewer.closed) viewer.postMessage(message, location.origin);
}

async function signedIn() {
  await finishSignIn();
  session = currentSession();
  if (!session) return null;
  const fresh = keepFresh(session, {
    renewed: () => {
      tellViewers();
      document.body.dataset.renewed = String(Number(document.body.dataset.renewed || 0) + 1);
    },
    failed: (error) => fail(new AppError(`Your sign-in could not be renewed; sign in again. (${error.message})`)),
  });
  if (Date.now() >= session.expiresAt - 60_000) await fresh.now();
  window.apertureRenew = fresh.now; // for tests and the console: renew now
  return session;
}

// --- the viewer, the download --------------------------------------------------------------------------

function openViewer(uids, { here = false } = {}) {
  sessionStorage.setItem(VIEWER_TOKEN, JSON.stringify({ accessToken: session.token, expiresAt: session.expiresAt }));
  const url = `/viewer/viewer?StudyInstanceUIDs=${uids.map(encodeURIComponent).join(",")}`;
  if (here) return location.replace(url);
  const viewer = window.open(url);
  if (viewer) viewers.push(viewer);
  else fail(new AppError("The viewer could not open a new tab: allow pop-ups for this site, then try again."));
}

// A form post with the token in the body (RFC 6750 §2.2): the browser saves the zip straight to disk, and the
// token is in no URL. `uid` null: every study this sign-in reaches.
function download(uid) {
  const form = document.createElement("form");
  form.method = "post";
  form.action = uid ? `/media/studies/${encodeURIComponent(uid)}` : "/media/studies";
  form.hidden = true;
  const token = document.createElement("input");
  Object.assign(token, { type: "hidden", name: "access_token", value: session.token });
  form.append(token);
  document.body.append(form);
  form.submit();
  form.remove();
}

// --- sending to another system ---------------------------------------------------------------------------

const here = (path) => new URL(path, location.href).href;

// The destinations this server may send to (names and kinds only); none, or a refusal, means no Send control.
async function destinations() {
  try {
    const listed = await json(here("/transmit/destinations"), "Reading where studies can be sent", { token: session.token });
    return Array.isArray(listed) ? listed.filter((d) => typeof d?.name === "string") : [];
  } catch {
    return [];
  }
}

// What the receiver did with the study, in a sentence: sent, and what was refused or failed with the first reason.
function sentWords(answer) {
  const { counts = {}, instances = [], destination } = answer;
  const words = [`Sent ${counts.sent || 0} of ${instances.length} instances to ${destination}.`];
  for (const outcome of ["refused", "failed"]) {
    if (!counts[outcome]) continue;
    const first = instances.find((i) => i.outcome === outcome);
    const status = first?.status ? ` (status ${first.status})` : "";
    words.push(`${counts[outcome]} ${outcome}${first?.reason ? `: ${first.reason}${status}` : ""}.`);
  }
  return words.join(" ");
}

// "Send to…": a choice of the configured destinations, a Send button, and a polite live region for the outcome.
function sendControl(study, label, choices) {
  const part = document.createElement("div");
  part.className = "send";
  const select = document.createElement("select");
  select.id = `send-to-${study.uid}`;
  const caption = document.createElement("label");
  caption.htmlFor = select.id;
  caption.textContent = "Send to…";
  for (const { name } of choices) select.append(new Option(name, name));
  const result = document.createElement("p");
  result.className = "sent";
  result.id = `sent-${study.uid}`;
  result.setAttribute("role", "status");
  result.setAttribute("aria-live", "polite");
  const send = button("Send", label, async () => {
    const destination = select.value;
    send.disabled = true;
    result.dataset.state = "sending";
    result.textContent = `Sending to ${destination}…`;
    try {
      const answer = await json(here("/transmit"), `Sending to ${destination}`, {
        token: session.token, method: "POST", type: "application/json",
        body: JSON.stringify({ study: study.uid, destination }),
      });
      result.textContent = sentWords(answer);
      result.dataset.state = answer.complete ? "sent" : "partly";
    } catch (error) {
      result.textContent = error instanceof AppError ? error.message : `Sending to ${destination} failed: ${error.message}`;
      result.dataset.state = "error";
    } finally {
      send.disabled = false;
    }
  });
  send.setAttribute("aria-describedby", result.id);
  part.append(caption, select, send, result);
  return part;
}

// --- reading the record ------------------------------------------------------------------------------------

async function patientRecord() {
  return json(`${session.iss}/Patient/${encodeURIComponent(session.patient)}`, "Reading your record at the EHR",
    { token: session.token, accept: FHIR_JSON });
}

// The bundles of a search and of its `next` links (MAX_PAGES at most), which must stay on the same server.
async function* searchPages(url, what) {
  for (let page = 0; url && page < MAX_PAGES; page++) {
    const bundle = await json(url, what, { token: session.token, accept: FHIR_JSON });
    yield bundle;
    url = (bundle.link || []).find((link) => link.relation === "next")?.url;
    if (url && !url.startsWith(`${session.imaging}/`)) return; // the token goes to the imaging server only
  }
}

// Every ImagingStudy of the patient, with the WADO-RS base of each (its Endpoint).
async function imagingStudies() {
  const query = new URLSearchParams({ patient: session.patient, _include: "ImagingStudy:endpoint" });
  const studies = [];
  const endpoints = new Map();
  for await (const bundle of searchPages(`${session.imaging}/ImagingStudy?${query}`, "Finding your imaging studies")) {
    for (const { resource = {}, fullUrl } of bundle.entry || []) {
      if (resource.resourceType === "Endpoint") endpoints.set(new URL(fullUrl).href, resource);
      if (resource.resourceType === "ImagingStudy") studies.push({ resource, fullUrl });
    }
  }
  return studies.map(({ resource, fullUrl }) => {
    const reference = resource.endpoint?.[0]?.reference;
    const contained = reference?.startsWith("#") ? (resource.contained || []).find((r) => `#${r.id}` === reference) : null;
    const endpoint = contained || (reference ? endpoints.get(new URL(reference, fullUrl).href) : null);
    const wado = endpoint?.address ? withoutSlash(httpUrl(endpoint.address, "The study's WADO-RS endpoint")) : null;
    return { resource, uid: uidOf(resource), wado, label: resource.description || "Imaging study" };
  }).filter((study) => study.uid);
}

// The EHR's imaging reports, by the StudyInstanceUID they name; a refusal leaves the studies without reports.
async function reports() {
  const byStudy = new Map();
  const query = new URLSearchParams({ patient: session.patient, _count: "100" });
  try {
    const bundle = await json(`${session.iss}/DiagnosticReport?${query}`, "Reading your reports",
      { token: session.token, accept: FHIR_JSON });
    for (const { resource = {} } of bundle.entry || []) {
      if (resource.resourceType !== "DiagnosticReport") continue;
      for (const ref of resource.imagingStudy || []) {
        const value = String(ref.identifier?.value || "");
        if (value.startsWith("urn:oid:")) byStudy.set(value.slice(8), resource);
      }
    }
  } catch (error) {
    $("reports-note").textContent = `Reports are not shown: ${error.message}`;
    $("reports-note").hidden = false;
  }
  return byStudy;
}

// --- the study list -----------------------------------------------------------------------------------------

function fact(list, term, text) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = text ?? "–";
  const pair = document.createElement("div"); // a term and its value stay together when the list wraps
  pair.append(dt, dd);
  list.append(pair);
}

function button(text, label, action) {
  const made = document.createElement("button");
  made.type = "button";
  made.textContent = text;
  made.setAttribute("aria-label", `${text}: ${label}`);
  made.addEventListener("click", action);
  return made;
}

function reportPart(report) {
  const part = document.createElement("details");
  part.className = "report";
  const summary = document.createElement("summary");
  summary.textContent = `Report (${report.status || "status unknown"}${report.issued ? `, ${report.issued.slice(0, 10)}` : ""})`;
  const text = document.createElement("p");
  text.textContent = report.conclusion || report.presentedForm?.[0]?.title || "The report has no conclusion text.";
  part.append(summary, text);
  return part;
}

function studyCard(study, report, choices) {
  const { resource, uid, label } = study;
  const card = document.createElement("article");
  card.className = "study";
  card.dataset.studyUid = uid;
  const heading = document.createElement("h3");
  heading.id = `study-${uid}`;
  heading.textContent = label;
  card.setAttribute("aria-labelledby", heading.id);
  const facts = document.createElement("dl");
  fact(facts, "Date", resource.started?.slice(0, 10));
  fact(facts, "Modality", (resource.modality || []).map((m) => m.code).join(", "));
  fact(facts, "Series", resource.numberOfSeries);
  fact(facts, "Images", resource.numberOfInstances);
  card.append(heading, facts);
  if (report) card.append(reportPart(report));
  const actions = document.createElement("div");
  actions.className = "actions";
  const grid = document.createElement("div");
  grid.className = "preview";
  grid.id = `preview-${uid}`;
  grid.hidden = true;
  if (study.wado) {
    let open = null;
    const preview = button("Preview", label, async () => {
      if (open) {
        open.close();
        open = null;
        grid.hidden = true;
        preview.setAttribute("aria-expanded", "false");
        return;
      }
      grid.hidden = false;
      preview.setAttribute("aria-expanded", "true");
      grid.textContent = "Loading the preview…";
      open = new PreviewGrid(grid, study, () => session.token);
      open.open().catch((error) => { grid.textContent = error.message; });
    });
    preview.setAttribute("aria-expanded", "false");
    preview.setAttribute("aria-controls", grid.id);
    actions.append(button("View", label, () => openViewer([uid])), preview, button("Download", label, () => download(uid)));
  } else {
    actions.textContent = "The imaging server names no place to fetch this study from.";
  }
  card.append(actions);
  if (study.wado && choices.length) card.append(sendControl(study, label, choices));
  card.append(grid);
  return card;
}

async function showStudies() {
  $("sign-out").hidden = false;
  $("sign-in").hidden = true;
  say("Loading your imaging studies…");
  const [record, studies, byStudy, choices] = await Promise.all(
    [patientRecord().catch(() => null), imagingStudies(), reports(), destinations()]);
  const name = record?.name?.[0];
  const shown = name ? [...(name.given || []), name.family].filter(Boolean).join(" ") : session.patient;
  $("patient").textContent = `Images of ${shown}`;
  studies.sort((a, b) => String(b.resource.started || "").localeCompare(String(a.resource.started || "")));
  $("studies").replaceChildren(...studies.map((study) => {
    const item = document.createElement("li");
    item.append(studyCard(study, byStudy.get(study.uid), choices));
    return item;
  }));
  $("all").hidden = studies.length === 0;
  say(studies.length ? `${studies.length} imaging ${studies.length === 1 ? "study" : "studies"}.` : "No imaging studies.");
  document.body.dataset.state = "ready";
}

async function index() {
  $("sign-out").addEventListener("click", () => {
    signOut();
    location.replace("./");
  });
  $("download-all").addEventListener("click", () => download(null));
  if (!(await signedIn())) {
    say("You are not signed in.");
    document.body.dataset.state = "signed-out";
    return;
  }
  const waiting = JSON.parse(sessionStorage.getItem(INVOKE) || "null");
  sessionStorage.removeItem(INVOKE);
  if (waiting && Date.now() - waiting.at < INVOKE_WAITS) {
    location.replace(`launch.html?${waiting.query}`); // an IID request waited for this sign-in
    return;
  }
  await showStudies();
}

// --- IHE Invoke Image Display ----------------------------------------------------------------------------

// The studies of this sign-in an IID request asks for (the server checked the request's form).
async function wanted(request) {
  const studies = await imagingStudies();
  const kind = request.get("requestType");
  if (kind === "STUDY") {
    const uids = (request.get("studyUID") || "").split(",").filter(Boolean);
    const accessions = (request.get("accessionNumber") || "").split(",").filter(Boolean);
    return studies.filter((s) => uids.includes(s.uid) || accessionsOf(s.resource).some((a) => accessions.includes(a)));
  }
  if (kind !== "PATIENT") throw new AppError("This page opens only requests that /IHEInvokeImageDisplay checked.");
  const record = await patientRecord();
  const same = (record.identifier || []).some(
    (i) => i.system === request.get("patientSystem") && i.value === request.get("patientValue"));
  if (!same) throw new AppError("The link is for another patient than the one you signed in for: nothing is shown.");
  const lower = request.get("lowerDateTime") ? Date.parse(request.get("lowerDateTime")) : -Infinity;
  const upper = request.get("upperDateTime") ? Date.parse(request.get("upperDateTime")) : Infinity;
  const modalities = (request.get("modalitiesInStudy") || "").split(",").filter(Boolean);
  const chosen = studies.filter((s) => {
    const when = Date.parse(s.resource.started || "");
    const codes = (s.resource.modality || []).map((m) => m.code);
    return when >= lower && when <= upper && (!modalities.length || codes.some((c) => modalities.includes(c)));
  }).sort((a, b) => String(b.resource.started || "").localeCompare(String(a.resource.started || "")));
  const most = Number(request.get("mostRecentResults")) || chosen.length;
  return chosen.slice(0, most);
}

async function invoke() {
  const asked = location.search.slice(1);
  if (!(await signedIn())) {
    sessionStorage.setItem(INVOKE, JSON.stringify({ query: asked, at: Date.now() }));
    say("Signing you in at the EHR first…");
    await signIn();
    return;
  }
  say("Finding the studies asked for…");
  const found = await wanted(new URLSearchParams(asked));
  if (!found.length) {
    say("None of the studies asked for is among those you may see with this sign-in.");
    document.body.dataset.state = "none";
    return;
  }
  say(`Opening the viewer on ${found.length} ${found.length === 1 ? "study" : "studies"}…`);
  openViewer(found.map((s) => s.uid), { here: true });
}

// --- launch.html ---------------------------------------------------------------------------------------------

async function launch() {
  const params = new URLSearchParams(location.search);
  say("Sending you to the EHR to sign in…");
  await signIn({ iss: params.get("iss"), launch: params.get("launch") });
}

// launch.html is also where IID requests arrive (a `requestType` the server checked), so both ways in share a page.
const page = document.body.dataset.page === "index" ? index : new URLSearchParams(location.search).has("requestType") ? invoke : launch;
page().catch(fail);
