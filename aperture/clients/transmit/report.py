"""The per-instance result of a transmit run, and the JSON file a rerun can read back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Outcome = Literal["sent", "refused", "failed", "skipped"]
#: sent: the receiver acknowledged it; refused: the receiver said no, for a reason retrying cannot change;
#: failed: still not acknowledged after the retries (or never reached the receiver);
#: skipped: a previous run's report says the same receiver acknowledged it.


@dataclass
class InstanceResult:
    study: str
    series: str
    sop_instance: str
    sop_class: str
    transfer_syntax: str  # as stored at the source
    outcome: Outcome = "failed"
    sent_as: str | None = None  # the transfer syntax the receiver got; differs from the stored one if transcoded
    status: str | None = None  # the receiver's status: C-STORE status or STOW FailureReason/WarningReason, hex
    reason: str | None = None  # what a person needs to know: the refusal or failure, or a warning
    attempts: int = 0
    size: int = 0
    source: str | None = None  # a folder source's file path

    @property
    def acknowledged(self) -> bool:
        return self.outcome in ("sent", "skipped")


@dataclass
class Report:
    destination: str
    results: list[InstanceResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = {name: 0 for name in ("sent", "skipped", "refused", "failed")}
        for result in self.results:
            found[result.outcome] += 1
        return found

    @property
    def complete(self) -> bool:
        """True when every instance was acknowledged (now or by a previous run)."""
        return all(result.acknowledged for result in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "counts": self.counts(),
            "instances": [asdict(result) for result in self.results],
        }

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def acknowledged_in(path: Path, destination: str) -> set[str]:
    """SOP Instance UIDs a previous report says `destination` acknowledged (empty for another destination)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if document.get("destination") != destination:
        return set()
    return {
        str(item["sop_instance"])
        for item in document.get("instances", [])
        if item.get("outcome") in ("sent", "skipped")
    }


def status_reason(code: int) -> str:
    """What a DICOM status (PS3.4 Annex B C-STORE statuses, which STOW-RS FailureReason reuses) means, in words."""
    if 0xA700 <= code <= 0xA7FF:
        return "the receiver is out of resources"
    if 0xA900 <= code <= 0xA9FF:
        return "the receiver says the data set does not match the SOP class"
    if 0xC000 <= code <= 0xCFFF and code != 0xC122:
        return "the receiver cannot understand the instance"
    return {
        0x0110: "processing failure at the receiver",
        0x0111: "the receiver already holds another instance with this SOP Instance UID",
        0x0117: "invalid SOP Instance (per the receiver)",
        0x0122: "the receiver does not support this SOP class",
        0x0124: "the receiver refuses: not authorized",
        0x0211: "the receiver does not recognise the operation",
        0xB000: "coercion of data elements",
        0xB006: "elements discarded",
        0xB007: "data set does not match SOP class (stored anyway)",
        0xC122: "the receiver does not support this transfer syntax",
    }.get(code, "refused by the receiver")
