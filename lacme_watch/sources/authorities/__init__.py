"""Certificate authorities: one module per YAML `authorities: - type:`."""
