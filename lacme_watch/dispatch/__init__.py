"""Events on their way out: recorded with their outbox rows (`ingest`, the spool),
delivered to sinks with retries (`delivery`), and to in-process subscribers."""
