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

With `progressive`, stacks load in two stages over byte ranges of the HTJ2K RPCL frames
(the server answers `Range` on `/frames/N`): the first 64 KiB of the displayed slice, decoded at
reduced resolution, then the rest of its codestream, appended. The stack prefetch would take the
first option for the other slices, but OHIF 3.13 was not seen prefetching them (docs/view-download-transmit.md).
"""

from __future__ import annotations

import json
from typing import Any

TOKEN_KEY = "aperture.viewer.token"
FIRST_RANGE = 65536  # bytes of a frame's codestream fetched first: the 256×256 level of a 512×512 CT slice

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


def progressive_retrieve() -> dict[str, Any]:
    """OHIF's `stackRetrieveOptions` ($set, replacing its streaming default) for byte-range HTJ2K."""
    return {
        "$set": {
            "stages": [
                {"id": "lossySequential", "retrieveType": "singleFast"},
                {"id": "finalSequential", "retrieveType": "singleFinal"},
            ],
            "retrieveOptions": {
                # first: the stack prefetch uses it for every other slice
                "singleFast": {"rangeIndex": 0, "chunkSize": FIRST_RANGE, "decodeLevel": 1},
                "singleFinal": {"rangeIndex": -1, "chunkSize": FIRST_RANGE},
            },
        }
    }


def app_config(
    dicomweb: str,
    *,
    name: str = "aperture",
    router_basename: str = "/",
    bearer: bool = False,
    progressive: bool = False,
) -> str:
    """OHIF's `app-config.js` with one DICOMweb data source at `dicomweb` (qidoRoot = wadoRoot)."""
    configuration: dict[str, Any] = {
        "friendlyName": name,
        "name": name,
        "qidoRoot": dicomweb,
        "wadoRoot": dicomweb,
        "wadoUriRoot": dicomweb,
        "imageRendering": "wadors",
        "thumbnailRendering": "wadors",
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
        "defaultDataSourceName": name,
        "dataSources": [source],
    }
    text = f"window.config = {json.dumps(config, indent=2)};\n"
    if bearer:
        script = _BEARER % {"key": json.dumps(TOKEN_KEY), "root": json.dumps(dicomweb.rstrip("/") + "/")}
        text += f"window.config.extensions.push({script});\n"
    return text
