"""Audit of access decisions: every permit and deny as a FHIR R4 AuditEvent (IHE BALP).

`events` holds the typed `AccessRecord` and its BALP AuditEvent, `recorder` writes records off the
request's path (bounded queue, background batches, read aggregation), `store` keeps them in the
index database and finds them again, `search` answers the FHIR search the `/fhir/AuditEvent`
endpoint will serve. Not yet wired into `aperture serve`: no request is recorded until the SMART
authorization lands and the server calls `AuditRecorder.record` on each decision.
"""
