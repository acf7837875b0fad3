"""The demo's one transmit destination: a C-STORE SCP inside `aperture demo` that keeps what it receives.

The app's *Send to…* needs a node to send to, and the demo has no second PACS; a pynetdicom Storage
SCP on a free loopback port costs a thread, so the demo configures it as the destination
"Demo receiver" and writes each instance it accepts, as received (the file meta pynetdicom builds
and the data set's bytes untouched), to `DIR/received/<SOPInstanceUID>.dcm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aperture.dicom.identifiers import uid_problem

if TYPE_CHECKING:
    from pynetdicom.transport import ThreadedAssociationServer

RECEIVER_AET = "DEMO-RECEIVER"
RECEIVER_NAME = "Demo receiver"
_SUCCESS, _CANNOT_UNDERSTAND, _OUT_OF_RESOURCES = 0x0000, 0xC000, 0xA700


def start_receiver(folder: Path) -> ThreadedAssociationServer:
    """Listen on 127.0.0.1 (a free port: `server.server_address[1]`) until `server.shutdown()`."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context, evt

    folder.mkdir(parents=True, exist_ok=True)

    def store(event: Any) -> int:
        sop = str(event.request.AffectedSOPInstanceUID or "")
        if uid_problem(sop):
            return _CANNOT_UNDERSTAND
        try:
            part = folder / f"{sop}.dcm.part"
            part.write_bytes(event.encoded_dataset())  # preamble, file meta, the data set as it came
            part.replace(folder / f"{sop}.dcm")
        except OSError:
            return _OUT_OF_RESOURCES
        return _SUCCESS

    ae = AE(ae_title=RECEIVER_AET)
    ae.require_called_aet = True
    classes = [cx.abstract_syntax for cx in AllStoragePresentationContexts if cx.abstract_syntax]
    ae.supported_contexts = [build_context(sop_class, ALL_TRANSFER_SYNTAXES) for sop_class in classes]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, store)])
    assert server is not None  # block=False always returns the running server
    return server
