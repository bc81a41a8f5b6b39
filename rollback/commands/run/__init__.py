"""``rollback run`` and ``rollback resume``: one plan across layers, carried out by :class:`rollback.runner.Run`.

- :mod:`~rollback.commands.run.types`: the request, the cross-layer plan, saved plans;
- :mod:`~rollback.commands.run.plan`: each layer's planning and :func:`~rollback.commands.run.plan.plan_run`;
- :mod:`~rollback.commands.run.world`: the ``run.check_world`` and ``--switch-database`` handlers;
- :mod:`~rollback.commands.run.tracker`: the incident's timeline and the notifications kept in step;
- :mod:`~rollback.commands.run.execute`: the library entry point shared by ``run --yes`` and ``watch``;
- :mod:`~rollback.commands.run.resume_guard`: ``resume`` refused once another run acted after the stopped one.
"""
