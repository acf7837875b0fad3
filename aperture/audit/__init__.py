"""Audit of access decisions: every permit and deny as a FHIR R4 AuditEvent (IHE BALP).

`events` holds the typed `AccessRecord` and its BALP AuditEvent, `recorder` writes records off the
request's path (bounded queue, background batches, read aggregation), `store` keeps them in the
index database and finds them again, `search` answers the FHIR search `/fhir/AuditEvent` serves.
`aperture serve` records every decided request through the route wrapper
(`aperture.auth.requirements.needs`), one recorder per worker.
"""
