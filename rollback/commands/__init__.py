"""The verbs as plain functions, one module per layer.

Each function takes a :class:`rollback.config.Config` (or the few values it
needs) first and returns plain data; the CLI only parses and presents. A
library caller can do everything the CLI can.
"""
