"""The runtime configuration (`app-config.js`) of the prebuilt OHIF viewer (npm `@ohif/app` 3.13).

OHIF is served unchanged from its `dist/`; only this file is generated, so one build works for any
DICOMweb root. The data source settings are the ones that make OHIF talk DICOMweb the way Aperture
answers it: WADO-RS frames and metadata, lazy study loading, BulkDataURIs followed, and the
unquoted `type=` Accept parameter cornerstone sends.
"""

from __future__ import annotations

import json


def app_config(dicomweb: str, *, name: str = "aperture") -> str:
    """OHIF's `app-config.js` with one DICOMweb data source at `dicomweb` (qidoRoot = wadoRoot)."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": name,
        "configuration": {
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
        },
    }
    config = {
        "routerBasename": "/",
        "extensions": [],
        "modes": [],
        "showStudyList": True,
        "investigationalUseDialog": {"option": "never"},
        "showWarningMessageForCrossOrigin": False,
        "showLoadingIndicator": True,
        "defaultDataSourceName": name,
        "dataSources": [source],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"
