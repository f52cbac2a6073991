"""Certificate stores: one module per YAML `stores: - type:`."""
