"""decide's signal flags are declared once (rollback.cli.decide_cmd.signal_flags) and shared by
'rollback decide' and 'rollback run', which decides first from them: the two take the same flags, each a
field of commands.decide.Flags, so a signal 'decide' knows cannot be missing from 'run'."""

from __future__ import annotations

import dataclasses

import click

from rollback.cli.decide_cmd import decide
from rollback.cli.run_cmd import run
from rollback.commands.decide import Flags


def _signal_options(command: click.Command) -> dict[str, tuple[str, bool]]:
    fields = {f.name for f in dataclasses.fields(Flags)}
    return {p.name: (type(p.type).__name__, bool(getattr(p, "is_flag", False)))
            for p in command.params if p.name in fields}


def test_decide_and_run_take_the_same_signal_flags() -> None:
    assert _signal_options(decide) == _signal_options(run)
    assert set(_signal_options(run)) == {f.name for f in dataclasses.fields(Flags)}
