"""Sinks: one module per YAML `sinks: - type:`."""
