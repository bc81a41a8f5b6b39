"""The db layer: backups, restore-then-swap, salvage, Prisma migrations, RDS, the write guard and the RPO.

One job per module, each with its planning function(s) and the step handlers of its actions:
:mod:`~rollback.commands.db.backup` (backups, staged standbys, pruning), :mod:`~rollback.commands.db.restore`
(restore beside the live database, then the swap), :mod:`~rollback.commands.db.salvage` (rows only in the
copy a swap kept), :mod:`~rollback.commands.db.migrations` (Prisma), :mod:`~rollback.commands.db.rds`
(snapshots and point-in-time restores), :mod:`~rollback.commands.db.guard` (writes paused around a swap),
:mod:`~rollback.commands.db.rpo` (recovery points against the target); what they share is in
:mod:`~rollback.commands.db.common`, the background safety dump in
:mod:`~rollback.commands.db.background` (its process: :mod:`~rollback.commands.db.background_run`).
:mod:`~rollback.commands.db.handlers` combines the jobs' handlers into the one
:class:`~rollback.commands.db.handlers.DbHandlers` a db plan runs with, and holds the library entry points.
"""
