"""A transmit run: study by study, fetch, send, record; the report says what each instance became."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from aperture.clients.transmit.report import InstanceResult, Report
from aperture.clients.transmit.source import Source, SourceError, SourceInstance


class Sender(Protocol):
    def send(self, study: str, instances: list[SourceInstance], results: dict[str, InstanceResult]) -> None: ...

    def close(self) -> None: ...


Progress = Callable[[str, InstanceResult], None]  # (event, result) after each instance's outcome is known


def transmit(
    source: Source,
    sender: Sender,
    destination: str,
    *,
    skip: set[str] | None = None,
    progress: Progress | None = None,
) -> Report:
    """Send every study of `source`; instances in `skip` (acknowledged before) are not sent again."""
    report = Report(destination)
    skip = skip or set()
    for study in source.studies():
        spool = Path(tempfile.mkdtemp(prefix="aperture-transmit-"))
        try:
            instances = list(source.instances(study, spool))
            results: dict[str, InstanceResult] = {}
            to_send: list[SourceInstance] = []
            for instance in instances:
                result = InstanceResult(
                    study=instance.study,
                    series=instance.series,
                    sop_instance=instance.sop_instance,
                    sop_class=instance.sop_class,
                    transfer_syntax=instance.transfer_syntax,
                    size=instance.path.stat().st_size,
                    source=instance.origin,
                )
                report.results.append(result)
                if instance.sop_instance in skip:
                    result.outcome = "skipped"
                    result.reason = "acknowledged in the previous report"
                    if progress:
                        progress("done", result)
                    continue
                results[instance.sop_instance] = result
                to_send.append(instance)
            if to_send:
                sender.send(study, to_send, results)
            if progress:
                for result in results.values():
                    progress("done", result)
        except SourceError:
            raise
        finally:
            shutil.rmtree(spool, ignore_errors=True)
    return report
