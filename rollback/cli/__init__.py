"""The ``rollback`` command line: argument parsing and presentation only.

Each layer keeps its group in its own module (``rollback.cli.app``, ...) and is
imported only when used, so ``rollback --help`` stays fast and never imports
boto3, httpx, psycopg or pulumi. The work itself is done by the plain functions
in ``rollback.commands``.

Exit codes (the CLI contract): 0 success; 1 an operation failed; 2 bad input;
3 checks ran and some failed; 4 refused; 130 interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from rollback import __version__
from rollback.cli.support import AppContext
from rollback.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    BadInput,
    MissingExtra,
    RollbackError,
)

__all__ = ["SUBCOMMANDS", "main", "root", "run"]

# name -> (module:attribute, section of the help page). Add a layer here when it exists.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "app": ("rollback.cli.app:app", "Layers"),
    "config": ("rollback.cli.config_cmd:config", "Setup"),
    "journal": ("rollback.cli.journal_cmd:journal", "Setup"),
    "db": ("rollback.cli.db:db", "Layers"),
    "infra": ("rollback.cli.infra:infra", "Layers"),
    "sandbox": ("rollback.cli.sandbox_cmd:sandbox", "Practice"),
    "drill": ("rollback.cli.drill_cmd:drill", "Practice"),
    "report": ("rollback.cli.report:report", "Incident"),
    "decide": ("rollback.cli.decide_cmd:decide", "Incident"),
    "run": ("rollback.cli.run_cmd:run", "Incident"),
    "resume": ("rollback.cli.run_cmd:resume", "Incident"),
    "incident": ("rollback.cli.incident_cmd:incident", "Incident"),
    "verify": ("rollback.cli.verify_cmd:verify", "Incident"),
    "watch": ("rollback.cli.watch_cmd:watch", "Incident"),
    "status": ("rollback.cli.status_cmd:status", "Incident"),
}
SECTIONS = ("Layers", "Incident", "Setup", "Practice")

# Top-level packages of the optional extras (pyproject.toml), and the extra that installs each.
EXTRA_OF: dict[str, str] = {"pulumi": "infra", "pulumi_aws": "infra", "moto": "sandbox", "flask": "sandbox",
                            "flask_cors": "sandbox", "werkzeug": "sandbox", "docker": "sandbox"}


def missing_extra(exc: ImportError) -> MissingExtra | None:
    """The one-line error for a module of an optional extra that is not installed, else None."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRA_OF.get(name)
    if extra is None:
        return None
    return MissingExtra(f"this command needs the '{extra}' extra: {name} is not installed",
                    f"pip install -e '.[{extra}]' in the repository (or pip install 'rollback[{extra}]')",
                    extra=extra, module=name)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use.

    A module of an optional extra that is not installed (``pulumi`` for ``infra``, ``moto`` for
    ``sandbox``), whether imported with the command or while it runs, is one line naming the
    extra to install (exit 2), never a ``ModuleNotFoundError`` traceback.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *SUBCOMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in SUBCOMMANDS:
            module_name, attribute = SUBCOMMANDS[cmd_name][0].split(":")
            try:
                command = getattr(importlib.import_module(module_name), attribute)
            except ImportError as exc:
                error = missing_extra(exc)
                if error is None:
                    raise
                app = ctx.find_object(AppContext)
                if app is not None and "--json" in app.argv:
                    app.json = True  # the command's own --json was never parsed: honour it for the error
                raise error from exc
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ImportError as exc:
            error = missing_extra(exc)
            if error is None:
                raise
            raise error from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        by_section: dict[str, list[tuple[str, str]]] = {}
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            try:
                command = self.get_command(ctx, name)
            except BadInput as exc:  # its extra is missing: still listed, with what to install
                section = SUBCOMMANDS.get(name, ("", "Incident"))[1]
                extra = exc.extra if isinstance(exc, MissingExtra) else None
                by_section.setdefault(section, []).append((name, f"(needs the '{extra}' extra)"))
                continue
            if command is None or command.hidden:
                continue
            section = SUBCOMMANDS.get(name, ("", "Incident"))[1]
            by_section.setdefault(section, []).append((name, command.get_short_help_str(limit)))
        for section in SECTIONS:
            if by_section.get(section):
                with formatter.section(section):
                    formatter.write_dl(by_section[section])


@click.group(cls=LazyGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", metavar="PATH",
              help="Config file (else $ROLLBACK_CONFIG, else rollback.toml found upwards).")
@click.option("--env", "env_name", metavar="NAME",
              help="Environment in the config (else $ROLLBACK_ENV, else default_env).")
@click.option("--traceback", "show_traceback", is_flag=True, help="Show a traceback on errors (for debugging).")
@click.version_option(__version__, "--version", "-V", prog_name="rollback")
@click.pass_context
def root(ctx: click.Context, config_path: str | None, env_name: str | None, show_traceback: bool) -> None:
    """Roll back a bad deploy: app (Vercel), database (PostgreSQL/Prisma, RDS) and
    infrastructure (Pulumi, CloudFront, Lambda@Edge, S3): fast, safe by default,
    journaled.

    Exit codes: 0 ok, 1 operation failed, 2 bad input, 3 checks failed,
    4 refused, 130 interrupted.
    """
    app = ctx.ensure_object(AppContext)
    app.config_path = config_path or app.config_path
    app.env_name = env_name or app.env_name
    app.traceback = show_traceback
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


def _print_error(app: AppContext, line: str, document: dict[str, Any] | None = None) -> None:
    # Errors embed text from outside (API bodies, library messages, arguments): redact on the way
    # out too, and show control characters escaped.
    from rollback.redact import redact, redact_text
    from rollback.safetext import dumps, printable

    if app.json and document is not None:
        click.echo(dumps({"ok": False, "error": redact(document)}))
    click.echo(f"error: {printable(redact_text(line))}", err=True)


def _print_traceback() -> None:
    """The current exception's traceback, through the redactor (``--traceback``, and bugs)."""
    from rollback.redact import redact_text
    from rollback.safetext import printable

    click.echo(printable(redact_text(traceback.format_exc()), keep_newlines=True).rstrip("\n"), err=True)


def _usage_line(exc: click.UsageError) -> str:
    command = exc.ctx.command_path if exc.ctx is not None else "rollback"
    message = " ".join(exc.format_message().split())
    return f"{message} (see '{command} --help')"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = AppContext(argv=args, traceback="--traceback" in args)
    code = EXIT_FAILED
    try:
        code = _run(app, args)
    finally:
        app.close_journals(_STATUS.get(code, "failed"), code, app.last_error)
    return code


_STATUS = {0: "succeeded", EXIT_REFUSED: "refused", EXIT_INTERRUPTED: "interrupted"}


def run() -> NoReturn:
    """The ``rollback`` program (the console script, ``python -m rollback``): :func:`main` with the
    process's arguments, then exit with its code.

    Without tearing the interpreter down: freeing every module's objects one by one (botocore's
    service models, pydantic's schemas, psycopg's and httpx's modules) costs a command about 0.1 s
    of CPU after its last line was printed (``python bench/decide.py``). Everything a normal exit
    does first still happens, in the same order: non-daemon threads are joined, then every other
    exit handler runs (this one was registered first, so it runs last), and the standard streams
    are flushed; only the teardown is skipped. Not for library callers: :func:`main` returns.
    """
    code = [EXIT_FAILED]  # an exception escaping main (a bug) still exits 1, after its traceback
    atexit.register(_leave, code)
    try:
        code[0] = main()
    except SystemExit as exc:  # the code Python itself would exit with
        code[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILED)
        raise
    except KeyboardInterrupt:
        code[0] = EXIT_INTERRUPTED
        raise
    sys.exit(code[0])


def _leave(code: list[int]) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (rollback ... | head): nothing to add
            stream.flush()
    os._exit(code[0])


def _run(app: AppContext, args: list[str]) -> int:
    try:
        result = root.main(args=args, prog_name="rollback", standalone_mode=False, obj=app)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        _print_error(app, _usage_line(exc), {"error": "UsageError", "message": exc.format_message(),
                                              "exit_code": EXIT_BAD_INPUT})
        return EXIT_BAD_INPUT
    except click.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            _print_error(app, "interrupted (the journal shows the last completed step)")
            return EXIT_INTERRUPTED
        _print_error(app, "cancelled: no answer at the prompt (pass --yes to confirm)")
        return EXIT_REFUSED
    except click.ClickException as exc:
        _print_error(app, " ".join(exc.format_message().split()))
        return exc.exit_code if exc.exit_code else EXIT_FAILED
    except RollbackError as exc:
        if app.traceback:
            _print_traceback()
        from rollback.redact import redact_text

        app.last_error = redact_text(exc.one_line())
        _print_error(app, exc.one_line(), exc.to_dict())
        return exc.exit_code
    except KeyboardInterrupt:
        _print_error(app, "interrupted (the journal shows the last completed step)")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILED
    except Exception:
        # A bug: show its traceback (that is what it is for), but never a secret in it.
        _print_traceback()
        app.last_error = "internal error (a bug): see the traceback"
        return EXIT_FAILED
    return result if isinstance(result, int) else 0
