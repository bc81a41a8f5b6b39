"""The app layer: Vercel rollback, promote, undo and git revert, and the abort of a rolling release.

- :mod:`~rollback.commands.app.plan`: reads Vercel (and git) and returns the plan (``plan_rollback``,
  ``plan_promote``, ``plan_undo``, ``plan_revert``), and the project's status;
- :mod:`~rollback.commands.app.handlers`: :class:`~rollback.commands.app.handlers.AppHandlers`, the steps
  that move the production alias, wait for a build and push a revert;
- :mod:`~rollback.commands.app.health`: the health checks of the app after it moved;
- :mod:`~rollback.commands.app.rolling`: a rolling release's canary (read, abort).
"""
