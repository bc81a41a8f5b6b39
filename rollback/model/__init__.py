"""The domain as data, pure of adapters: the decision matrix (:mod:`~rollback.model.decide`), what changed
recently (:mod:`~rollback.model.changes`), the cross-layer hazards (:mod:`~rollback.model.layers`), the watch's
judgement (:mod:`~rollback.model.watch`), the incident record (:mod:`~rollback.model.incident`), the report's
data (:mod:`~rollback.model.report`), and the diffs of stack versions, CloudFront configs and drift
(:mod:`~rollback.model.stackdiff`, :mod:`~rollback.model.cdndiff`, :mod:`~rollback.model.drift`).

The verbs that read the world and act on it are in :mod:`rollback.commands`; the CLI in :mod:`rollback.cli`.
"""
