// The preview grid: a whole study at a glance, as JPEGs the server renders (PS3.18 §10.4.1.1.4 thumbnails,
// §10.4.1.1.3 rendered), before any DICOM reaches the browser. Each picture is asked for at the size it is
// shown (CSS pixels times devicePixelRatio), fetched with the token in the Authorization header (an <img>
// cannot send one) and shown through a blob URL; pictures are fetched as they scroll into view, a few at a
// time, so a phone on a slow link gets the first row first. Choosing one shows it large, rendered for the
// screen, with the previous and next image a key or a button away.
"use strict";

import { AppError, call, json } from "./smart.js";

const DICOM_JSON = "application/dicom+json";
const AT_ONCE = 6; // pictures in flight
const value = (item, tag) => item?.[tag]?.Value?.[0];
const byNumber = (tag) => (a, b) => (Number(value(a, tag)) || 0) - (Number(value(b, tag)) || 0);

// A few fetches at a time, newest wish last: what scrolled into view is fetched in order.
class Queue {
  constructor(limit) {
    Object.assign(this, { limit, running: 0, waiting: [] });
  }
  add(job) {
    this.waiting.push(job);
    this.next();
  }
  next() {
    while (this.running < this.limit && this.waiting.length) {
      const job = this.waiting.shift();
      this.running++;
      job().finally(() => {
        this.running--;
        this.next();
      });
    }
  }
}

export class PreviewGrid {
  /** `place`: the element the grid fills; `study`: {uid, label, wado}; `token()`: the current access token. */
  constructor(place, study, token) {
    Object.assign(this, { place, study, token, urls: [], images: [], queue: new Queue(AT_ONCE) });
    this.aborter = new AbortController();
  }

  async open() {
    const { wado, uid, label } = this.study;
    const base = `${wado}/studies/${encodeURIComponent(uid)}`;
    const ask = { token: this.token(), accept: DICOM_JSON, signal: this.aborter.signal };
    const series = (await json(`${base}/series`, `Listing the series of ${label}`, ask)).sort(byNumber("00200011"));
    this.place.replaceChildren();
    const watcher = new IntersectionObserver((seen) => {
      for (const entry of seen) {
        if (!entry.isIntersecting) continue;
        watcher.unobserve(entry.target);
        this.queue.add(() => this.fill(entry.target));
      }
    }, { rootMargin: "200px" });
    for (const one of series) {
      const seriesUid = value(one, "0020000E");
      const where = `${base}/series/${encodeURIComponent(seriesUid)}`;
      const instances = (await json(`${where}/instances`, `Listing the images of ${label}`, ask)).sort(byNumber("00200013"));
      const title = [value(one, "00080060"), value(one, "0008103E") || `series ${value(one, "00200011") ?? ""}`]
        .filter(Boolean).join(": ");
      const section = document.createElement("section");
      section.className = "series";
      const heading = document.createElement("h4");
      heading.textContent = `${title} (${instances.length} ${instances.length === 1 ? "image" : "images"})`;
      const list = document.createElement("ul");
      list.className = "grid";
      list.setAttribute("aria-label", title);
      instances.forEach((instance, n) => {
        const item = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "tile";
        const name = `${title}, image ${n + 1} of ${instances.length}`;
        button.setAttribute("aria-label", `${name}: show large`);
        const img = document.createElement("img");
        img.alt = "";
        img.dataset.instance = `${where}/instances/${encodeURIComponent(value(instance, "00080018"))}`;
        img.dataset.name = name;
        button.append(img);
        button.addEventListener("click", () => this.enlarge(this.images.indexOf(img)));
        item.append(button);
        list.append(item);
        this.images.push(img);
        watcher.observe(img);
      });
      section.append(heading, list);
      this.place.append(section);
    }
    this.watcher = watcher;
    if (!this.images.length) this.place.textContent = "This study has no images to preview.";
  }

  // One picture, as big as its tile on this screen.
  async fill(img) {
    const side = Math.ceil((img.parentElement.clientWidth || 96) * (window.devicePixelRatio || 1));
    try {
      img.src = await this.picture(`${img.dataset.instance}/thumbnail?viewport=${side},${side}`, img.dataset.name);
      await img.decode();
      img.dataset.drawn = "true";
    } catch (error) {
      if (error.name === "AbortError") return;
      img.alt = error instanceof AppError ? error.message : `${img.dataset.name}: no preview`;
      img.dataset.drawn = "failed";
    }
  }

  async picture(url, name) {
    const response = await call(url, `The picture ${name}`, { token: this.token(), accept: "image/jpeg", signal: this.aborter.signal });
    const made = URL.createObjectURL(await response.blob());
    this.urls.push(made);
    return made;
  }

  // The n-th image, rendered for the screen, in a modal dialog (Escape closes it; focus returns to the tile).
  async enlarge(n) {
    const dialog = document.getElementById("enlarged");
    const img = dialog.querySelector("img");
    const caption = dialog.querySelector("figcaption");
    const show = async (k) => {
      this.at = (k + this.images.length) % this.images.length;
      const chosen = this.images[this.at];
      caption.textContent = chosen.dataset.name;
      img.alt = chosen.dataset.name;
      img.dataset.drawn = "false";
      const ratio = window.devicePixelRatio || 1;
      const width = Math.ceil(Math.min(window.innerWidth, 1600) * ratio);
      const height = Math.ceil(Math.min(window.innerHeight * 0.8, 1600) * ratio);
      try {
        img.src = await this.picture(`${chosen.dataset.instance}/rendered?viewport=${width},${height}`, chosen.dataset.name);
        await img.decode();
        img.dataset.drawn = "true";
      } catch (error) {
        caption.textContent = error.message;
      }
    };
    dialog.onkeydown = (event) => {
      if (event.key === "ArrowRight") show(this.at + 1);
      if (event.key === "ArrowLeft") show(this.at - 1);
    };
    dialog.querySelector("[data-step='-1']").onclick = () => show(this.at - 1);
    dialog.querySelector("[data-step='1']").onclick = () => show(this.at + 1);
    const tile = this.images[n].parentElement;
    dialog.onclose = () => tile.focus();
    dialog.showModal();
    await show(n);
  }

  close() {
    this.aborter.abort();
    this.watcher?.disconnect();
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.place.replaceChildren();
  }
}
