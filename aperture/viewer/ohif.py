"""The runtime configuration (`app-config.js`) of the prebuilt OHIF viewer (npm `@ohif/app` 3.13).

OHIF is served unchanged but for its root paths (aperture/viewer/dist.py); only this file is
generated, so one build works for any DICOMweb root. The data source settings are the ones that
make OHIF talk DICOMweb the way Aperture answers it: WADO-RS frames and metadata, lazy study
loading, BulkDataURIs followed, and the unquoted `type=` Accept parameter cornerstone sends.

With `bearer`, the file also carries a tiny OHIF extension (an inline object in `extensions`,
which OHIF 3.13's loader takes as is) whose `preRegistration` hook gives `userAuthenticationService`
a `getAuthorizationHeader` that reads the current SMART access token: every request OHIF and its
image loader make (QIDO, metadata, frames, bulk data, thumbnails) then carries
`Authorization: Bearer …`. The loader's byte-range requests skip that hook (a `fetch` without
`beforeSend` in dicom-image-loader 5.6), so `fetch` calls to the DICOMweb root (a relative root
is resolved against the page) get the same header added. The token comes from `sessionStorage["aperture.viewer.token"]`
(`{"accessToken", "expiresAt"}`, written by the SMART app before it opens the viewer; a tab
opened with `window.open` gets a copy), never from the URL; a refreshed token arrives as a
`postMessage({type: "aperture.viewer.token", accessToken, expiresAt})` from a window of this same
origin, and the header function reads it on the next request.

With `one_context_on_cpu_gl`, a third extension keeps cornerstone to one WebGL context where the browser rasterizes on
the CPU (cornerstone's own probe: SwiftShader, llvmpipe, …, as in a VM or a thin client without a
GPU): cornerstone 4 creates a pool of seven contexts for parallel rendering on a GPU, and on a
software rasterizer each costs set-up time on the main thread (about 80 ms for the pool, just
before the first slice is drawn) and buys no parallelism. A GPU keeps the pool.

With `progressive`, stacks load over byte ranges of the HTJ2K RPCL frames (the server answers
`Range` on `/frames/N`). The displayed slice comes in two stages (`stackRetrieveOptions`): its
first 16 KiB (all of the 128×128 level of a 512×512 CT slice and part of the 256×256 one; the
loader decodes such a prefix at the level its share of the codestream suggests, here half the
width), then the rest of its codestream, appended. A second inline extension replaces OHIF's stack-context
prefetch (`stackContextPrefetch.enable`, which OHIF calls for every new stack) with one pass over
the whole stack, nearest the displayed slice first, once that slice is drawn. How the pass goes
depends on the link, judged from the largest frame answer so far (Resource Timing):

- slower than `FAST_LINK` (5 MB/s): the same two stages for every slice, so a person can scroll
  the whole study at reduced resolution long before all of it has arrived; every slice ends at
  full resolution, nothing fetched twice. The first ranges go first, as many at a time as OHIF's
  prefetch pool allows; the rests run in a pool of their own, `REST_STREAMS` at a time until every
  first range is in, then as many as the prefetch pool. The first-range pass alone leaves the
  link partly idle (its small requests each pay the link's latency), so the rests take what it
  leaves (an alternating run of 4 + 4 page loads at 20 Mbit/s: all frames 21.6 s against 23.0 s
  with every rest after every first range);
- faster: one stage, each slice whole and uncompressed (the PS3.18 `accept` query parameter asks
  for Explicit VR Little Endian): there the browser's decode worker, not the link, is the limit
  (OHIF runs one worker on a 2-CPU machine; an HTJ2K 512×512 decode costs it about 30 ms).

The same extension warms the decode workers: each gets a tiny HTJ2K codestream to decode as soon
as the image loader registers them, so the codec's set-up is done before the displayed slice's
bytes arrive.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

TOKEN_KEY = "aperture.viewer.token"
FIRST_RANGE = 16384  # bytes of a frame's codestream fetched first: past the 128×128 level of a 512×512 CT slice
FAST_LINK = 5000  # bytes per ms (5 MB/s, 40 Mbit/s): above it, slices come whole, without the low-resolution pass
REST_STREAMS = 4  # on a slow link, the rests of slices in flight beside the first-range pass
FIRST_DECODE_LEVEL = 2  # the coarsest level a prefix is decoded at, 1/4 of the width (each level halves it)
# An 8×8 16-bit gradient as an HTJ2K codestream (aperture/dicom/htj2k.py encoded it; a test decodes
# it back): what the every-slice extension gives each decode worker to set its codec up early.
WARM_SIZE = 8
WARM_CODESTREAM = (
    "/0//UQApQAAAAAAIAAAACAAAAAAAAAAAAAAACAAAAAgAAAAAAAAAAAABDwEB/1AACAACAAAACv9SAAwAAgABAAMEBEAB/1wADSCIkJCQkJCQ"
    "iIiI/2QAFwABT3BlbkpQSCBWZXIgMC4yNi4zLv9VABwAYAAAAAAAFwAAAAAAIAAAAAAAIgAAAAAAJf+QAAoAAAAAABcABP+TwAAmbf0FB3QA"
    "/5AACgAAAAAAIAEE/5PAABLAABMAkAEHdACO/AKHdAD/kAAKAAAAAAAiAgT/k8AAE0AAE4CG8QCCdAA++vgAg1QA/5AACgAAAAAAJQME/5PA"
    "ACeAAFSA7u6gp8J1AP5+v8AhAey2AP/Z"
)
WHOLE_FRAME = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'

# The bearer extension. `current` is read on every request, so a token posted later is used at once.
_BEARER = """(function () {
  var KEY = %(key)s;
  var current = null;
  function accept(value) {
    if (value && typeof value.accessToken === "string" && value.accessToken) {
      current = {accessToken: value.accessToken, expiresAt: value.expiresAt || null};
      return true;
    }
    return false;
  }
  try { accept(JSON.parse(window.sessionStorage.getItem(KEY) || "null")); } catch (e) { current = null; }
  window.addEventListener("message", function (event) {
    if (event.origin !== window.location.origin) return;  // only this origin's SMART app may hand a token
    var data = event.data;
    if (!data || data.type !== KEY || !accept(data)) return;
    window.sessionStorage.setItem(KEY, JSON.stringify(current));
  });
  // cornerstone's byte-range requests (dicom-image-loader 5.6) use fetch() without its beforeSend hook,
  // so they would go out unsigned: fetches to this DICOMweb root get the header here
  var root = new URL(%(root)s, window.location.href).href;
  var plainFetch = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (current && new URL(url, window.location.href).href.indexOf(root) === 0) {
      var headers = new Headers((init && init.headers) || (input instanceof Request ? input.headers : undefined));
      if (!headers.has("Authorization")) headers.set("Authorization", "Bearer " + current.accessToken);
      init = Object.assign({}, init, {headers: headers});
    }
    return plainFetch(input, init);
  };
  return {
    id: "aperture-bearer",
    preRegistration: function (hooks) {
      hooks.servicesManager.services.userAuthenticationService.setServiceImplementation({
        getAuthorizationHeader: function () {
          return current ? {Authorization: "Bearer " + current.accessToken} : undefined;
        },
      });
    },
  };
})()"""


# One WebGL context on a software rasterizer (see the module docstring). preRegistration runs after
# OHIF's cornerstone extension has initialised cornerstone (extensions register in order, ours last)
# and before any viewport, so the rendering engine is created with it.
_RENDERING = """{
  id: "aperture-rendering",
  preRegistration: function () {
    var core = window.cornerstone;
    var capabilities = core && core.getRenderingCapabilities && core.getRenderingCapabilities();
    if (!capabilities || !capabilities.webgl || !capabilities.softwareRasterizer) return;
    var config = core.getConfiguration();
    core.setConfiguration(Object.assign({}, config, {
      rendering: Object.assign({}, config.rendering, {webGlContextCount: 1}),
    }));
  },
}"""


# The every-slice pass. cornerstone's `ProgressiveRetrieveImages` chains the two stages per image (the
# second appends to the bytes of the first) and queues the second stages behind every first stage
# still waiting (pool priority 1 after 0). OHIF sets window.cornerstone(Tools) when its cornerstone
# extension loads; until then the patch waits.
_EVERY_SLICE = """(function () {
  var RETRIEVE = %(retrieve)s;
  var FAST_LINK = %(fast_link)d;
  var WARM_CODESTREAM = %(warm)s;  // an 8×8 HTJ2K codestream (see WARM_CODESTREAM in ohif.py)
  var WARM_SIZE = %(warm_size)d;
  var REST_POOL = "compute";  // a request type of cornerstone's image load pool that OHIF leaves unused
  var REST_STREAMS = %(rest_streams)d;
  var started = {};
  // bytes per ms the link delivered the largest frame answer so far (Resource Timing; 0 when unknown):
  // on a link faster than the decoder the low-resolution pass only adds decodes, so it is skipped
  function linkRate() {
    var best = null;
    performance.getEntriesByType("resource").forEach(function (e) {
      if (e.name.indexOf("/frames/") < 0 || !(e.responseStart > 0)) return;
      if (!best || e.encodedBodySize > best.encodedBodySize) best = e;
    });
    if (!best || best.encodedBodySize < 8192) return 0;
    return best.encodedBodySize / Math.max(best.responseEnd - best.responseStart, 0.1);
  }
  function outward(n, current) {
    var order = [];
    for (var d = 1; d < n; d++) {
      if (current + d < n) order.push(current + d);
      if (current - d >= 0) order.push(current - d);
    }
    return order;
  }
  function everySlice(core, element) {
    var enabled = core.getEnabledElement(element);
    var viewport = enabled && enabled.viewport;
    if (!viewport || typeof viewport.getImageIds !== "function") return;
    var ids = viewport.getImageIds();
    if (!ids || ids.length < 2) return;
    var key = ids[0] + "|" + ids[ids.length - 1] + "|" + ids.length;
    if (started[key]) return;
    started[key] = true;
    var order = outward(ids.length, viewport.getCurrentImageIdIndex ? viewport.getCurrentImageIdIndex() : 0);
    var stages = [{id: "aperture-every-slice-whole", positions: order, retrieveType: "whole",
                   requestType: "prefetch", priority: 0}];
    if (linkRate() < FAST_LINK) {
      stages = [
        {id: "aperture-every-slice-first-range", positions: order, retrieveType: "singleFast",
         requestType: "prefetch", priority: 0},
        {id: "aperture-every-slice-rest", positions: order, retrieveType: "singleFinal",
         requestType: REST_POOL, priority: 0},
      ];
      // the rests run in a pool of their own, a few at a time beside the first ranges: they take
      // the link while the first-range pass waits on the decoder, and never crowd that pass out
      var pool = core.imageLoadPoolManager;
      pool.setMaxSimultaneousRequests(REST_POOL, REST_STREAMS);
      core.eventTarget.addEventListener(core.Enums.Events.IMAGE_RETRIEVAL_STAGE, function widen(event) {
        if (!event.detail || event.detail.stageId !== "aperture-every-slice-first-range") return;
        core.eventTarget.removeEventListener(core.Enums.Events.IMAGE_RETRIEVAL_STAGE, widen);
        pool.setMaxSimultaneousRequests(REST_POOL, pool.getMaxSimultaneousRequests("prefetch"));  // the link is theirs
      });
    }
    core.ProgressiveRetrieveImages.createProgressive({
      stages: stages,
      retrieveOptions: RETRIEVE,
    }).loadImages(ids, {
      successCallback: function () {},
      errorCallback: function (imageId, permanent, reason) {
        if (permanent) console.warn("aperture: slice not loaded", imageId, reason);
      },
      getLoaderImageOptions: function () { return {requestType: "prefetch"}; },
    });
  }
  // after the displayed slice is drawn, so that the pass does not delay it
  function afterFirstDraw(core, element) {
    var done = false;
    function go() {
      if (done) return;
      done = true;
      element.removeEventListener(core.Enums.Events.IMAGE_RENDERED, go);
      everySlice(core, element);
    }
    element.addEventListener(core.Enums.Events.IMAGE_RENDERED, go);
    window.setTimeout(go, 5000);
  }
  // The decode worker sets up its HTJ2K codec (the wasm compiled and instantiated) on its first
  // decode. Left to the displayed slice, that set-up sits between the slice's bytes arriving and
  // its draw; a tiny decode as soon as the workers exist moves it into the time OHIF spends on the
  // study's metadata. One task per worker (the manager gives each new task the least-loaded one).
  function warmDecoders() {
    var core = window.cornerstone;
    var manager = core && core.getWebWorkerManager && core.getWebWorkerManager();
    var worker = manager && manager.workerRegistry && manager.workerRegistry.dicomImageLoader;
    if (!worker) return false;
    var codestream = Uint8Array.from(atob(WARM_CODESTREAM), function (c) { return c.charCodeAt(0); });
    worker.instances.forEach(function () {
      manager.executeTask("dicomImageLoader", "decodeTask", {
        imageFrame: {samplesPerPixel: 1, photometricInterpretation: "MONOCHROME2", rows: WARM_SIZE,
                     columns: WARM_SIZE, bitsAllocated: 16, bitsStored: 16, pixelRepresentation: 0},
        transferSyntax: "1.2.840.10008.1.2.4.201",
        pixelData: codestream.slice(),
        options: {preScale: {enabled: false}},
        decodeConfig: {},
      }, {requestType: "interaction", priority: -5}).catch(function (e) {
        console.warn("aperture: decoder warm-up", e);
      });
    });
    return true;
  }
  function patch() {
    var core = window.cornerstone, tools = window.cornerstoneTools;
    var prefetch = tools && tools.utilities && tools.utilities.stackContextPrefetch;
    if (!core || !core.ProgressiveRetrieveImages || !prefetch) return false;
    prefetch.enable = function (element) { afterFirstDraw(core, element); };
    return true;
  }
  if (!patch()) {
    var tries = 0;
    var timer = window.setInterval(function () {  // until OHIF's cornerstone extension has loaded (30 s at most)
      if (patch() || ++tries > 1500) window.clearInterval(timer);
    }, 20);
  }
  if (!warmDecoders()) {
    var warmTries = 0;
    var warmTimer = window.setInterval(function () {  // until the image loader has registered its workers
      if (warmDecoders() || ++warmTries > 1500) window.clearInterval(warmTimer);
    }, 20);
  }
  return {id: "aperture-every-slice"};
})()"""


def progressive_retrieve() -> dict[str, Any]:
    """OHIF's `stackRetrieveOptions` ($set, replacing its streaming default) for byte-range HTJ2K."""
    return {
        "$set": {
            "stages": [
                {"id": "lossySequential", "retrieveType": "singleFast"},
                {"id": "finalSequential", "retrieveType": "singleFinal"},
            ],
            "retrieveOptions": range_options(),
        }
    }


def range_options() -> dict[str, Any]:
    """The retrieve options by name: the first range of a frame, then the rest appended, or the whole
    frame uncompressed (the every-slice pass on a fast link)."""
    return {
        "singleFast": {"rangeIndex": 0, "chunkSize": FIRST_RANGE, "decodeLevel": FIRST_DECODE_LEVEL},
        "singleFinal": {"rangeIndex": -1, "chunkSize": FIRST_RANGE},
        # on a fast link: the frame uncompressed (PS3.18 `accept` query parameter), nothing to decode
        "whole": {"urlArguments": "accept=" + quote(WHOLE_FRAME, safe="")},
    }


def app_config(
    dicomweb: str,
    *,
    name: str = "aperture",
    router_basename: str = "/",
    bearer: bool = False,
    progressive: bool = False,
    thumbnails: str = "wadors",
    one_context_on_cpu_gl: bool = False,
) -> str:
    """OHIF's `app-config.js` with one DICOMweb data source at `dicomweb` (qidoRoot = wadoRoot).

    ``thumbnails`` is OHIF's `thumbnailRendering`: "wadors" decodes a frame per series thumbnail,
    "thumbnail" asks the server's `/thumbnail` (a JPEG; through the DICOMweb client, so with the
    bearer header).
    """
    configuration: dict[str, Any] = {
        "friendlyName": name,
        "name": name,
        "qidoRoot": dicomweb,
        "wadoRoot": dicomweb,
        "wadoUriRoot": dicomweb,
        "imageRendering": "wadors",
        "thumbnailRendering": thumbnails,
        "enableStudyLazyLoad": True,
        "bulkDataURI": {"enabled": True},
        "omitQuotationForMultipartRequest": True,
        "supportsWildcard": True,
        "supportsFuzzyMatching": False,
        "dicomUploadEnabled": False,
        "staticWado": False,
    }
    if progressive:
        configuration["stackRetrieveOptions"] = progressive_retrieve()
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": name,
        "configuration": configuration,
    }
    config = {
        "routerBasename": router_basename,
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "investigationalUseDialog": {"option": "never"},
        "showWarningMessageForCrossOrigin": False,
        "showLoadingIndicator": True,
        # no onboarding tour (shepherd.js) over the viewport: OHIF reads its steps from this customization
        "customizationService": {"ohif.tours": {"$set": []}},
        # as OHIF's own shipped app-config.js: its code's fallbacks when these are absent are lower
        # (one decode worker, a prefetch pool without a limit it was tuned for)
        "maxNumberOfWebWorkers": 3,
        "maxNumRequests": {"interaction": 100, "thumbnail": 5, "prefetch": 25},
        "defaultDataSourceName": name,
        "dataSources": [source],
    }
    text = f"window.config = {json.dumps(config, indent=2)};\n"
    if one_context_on_cpu_gl:
        text += f"window.config.extensions.push({_RENDERING});\n"
    if progressive:
        script = _EVERY_SLICE % {
            "retrieve": json.dumps(range_options()),
            "fast_link": FAST_LINK,
            "warm": json.dumps(WARM_CODESTREAM),
            "warm_size": WARM_SIZE,
            "rest_streams": REST_STREAMS,
        }
        text += f"window.config.extensions.push({script});\n"
    if bearer:
        script = _BEARER % {"key": json.dumps(TOKEN_KEY), "root": json.dumps(dicomweb.rstrip("/") + "/")}
        text += f"window.config.extensions.push({script});\n"
    return text
