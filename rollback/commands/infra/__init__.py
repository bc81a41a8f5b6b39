"""The infrastructure layers: the Pulumi stack (history, diff, preview, restore) and the break-glass
restores straight through boto3 (edge, assets, CloudFront config, invalidation).

- :mod:`~rollback.commands.infra.stack` (library entry points), :mod:`~rollback.commands.infra.stack_plan`
  (planning a preview or a restore), :mod:`~rollback.commands.infra.stack_handlers` (its steps),
  :mod:`~rollback.commands.infra.program` (version N's program and its environment);
- :mod:`~rollback.commands.infra.edge` (the Lambda@Edge version per behaviour),
  :mod:`~rollback.commands.infra.assets` (S3 object versions), :mod:`~rollback.commands.infra.cdn` (the whole
  ``DistributionConfig`` from a snapshot), :mod:`~rollback.commands.infra.invalidate`;
  :mod:`~rollback.commands.infra.resources` names what they act on (flags, rollback.toml, the stack's outputs).
"""
