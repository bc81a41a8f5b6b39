"""Templates users can override: the incident report, the email and the banner.

Lookup, first match wins, file by file (override one, keep the other defaults):

1. ``templates_dir`` from ``rollback.toml`` (relative to the file), when set;
2. ``.rollback/templates/`` beside ``rollback.toml``;
3. the package's defaults in ``rollback/templates/``.

Templates are Jinja2 (loops and conditionals over the report's data; the
sandboxed environment, since a template is a file anyone with the repository
can change). Every value a template prints is escaped for where it lands, so
text from the incident record shows as written (a reason ``<script>`` or
``[/api/pay]``), whatever the template author remembers:

- ``*.html.j2``: HTML autoescaping;
- ``*.md.j2``: Markdown escaping (backslash before the characters Markdown
  would interpret, ``|`` included, so table cells hold);
- ``*.txt.j2``: plain text.

In all three, control characters are shown escaped (``\\x1b``) and line breaks
inside a value become spaces (a value cannot start a header or break a table).
``{{ value|safe }}`` prints a value as it is, for a template that knows better.

A render that takes longer than :data:`RENDER_SECONDS` (a loop that never ends, a typo in
an override) is stopped and reported in one line naming the file: templates are trusted,
but a report must never hang. In the main thread a timer signal interrupts the render
wherever it is; elsewhere the sandbox checks the clock at every call and attribute access
a template makes.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollback.errors import BadInput
from rollback.model.report import format_seconds

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

__all__ = ["RENDER_SECONDS", "Templates", "md_escape", "visible"]

PACKAGE_DIR = Path(__file__).parent / "templates"
RENDER_SECONDS = 10.0  # a report renders in milliseconds; this long is a template that loops for ever


class RenderTooLong(Exception):
    """Raised inside a render that went past its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float, deadline: list[float]) -> Iterator[None]:
    """Stop the code inside after ``seconds``: a SIGALRM timer in the main thread (it interrupts any
    Python loop); ``deadline`` is also set for the sandbox's own checks (any thread)."""
    deadline[0] = time.monotonic() + seconds
    armed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    previous: Any = None
    if armed:
        def expired(signum: int, frame: Any) -> None:
            raise RenderTooLong()

        try:
            previous = signal.signal(signal.SIGALRM, expired)
            signal.setitimer(signal.ITIMER_REAL, seconds)
        except (ValueError, OSError):
            armed = False
    try:
        yield
    finally:
        deadline[0] = float("inf")
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones
# that can start markup inside a line or a table cell ('[' and ']' disarm links and
# images, '<' raw HTML and autolinks, '&' entities: "&lt;" must not turn into "<").
# '_' only where it can open or close emphasis: app_replaced_x stays readable.
_MD_SPECIAL = re.compile(r"([\\`*\[\]<|~&])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
# What would start a block (heading, quote, list, thematic break) at the start of a
# list item or line: escaped when a value begins with it.
_MD_BLOCK_START = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|[-+](?=\s|$)|>|\d{1,9}(?=[.)](?:\s|$)))")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029\x85]")
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


def visible(value: Any) -> str:
    """``value`` as one line of text: line breaks become spaces, control and bidi-override
    characters are shown escaped (``\\x1b``, ``\\u202e``) instead of acting."""
    text = _LINE_BREAKS.sub(" ", str(value))
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char == "\t":
            out.append(" ")
        elif unicodedata.category(char) == "Cc" or char in _BIDI:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def md_escape(value: Any) -> str:
    """Text for Markdown: shown as written, whatever characters it holds."""
    text = _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), visible(value))
    return _MD_BLOCK_START.sub(lambda m: m.group(1) + "\\" + m.group(2) if not m.group(2).isdigit()
                               else m.group(1) + m.group(2) + "\\", text, count=1)


def _kind(name: str) -> str:
    for suffix, kind in ((".html.j2", "html"), (".md.j2", "md"), (".txt.j2", "text")):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"template {name!r} must end in .html.j2, .md.j2 or .txt.j2")


class Templates:
    """Renders a named template found in ``dirs`` (in order), else in the package's defaults."""

    def __init__(self, dirs: Sequence[Path] = (), *, required: Sequence[Path] = (),
                 render_seconds: float = RENDER_SECONDS) -> None:
        for directory in required:
            if not directory.is_dir():
                raise BadInput(f"templates_dir {directory} does not exist",
                               "create it, or remove templates_dir from rollback.toml to use the defaults")
        self.dirs = [d for d in dirs if d.is_dir()]
        self.render_seconds = render_seconds
        self._deadline = [float("inf")]
        self._envs: dict[str, SandboxedEnvironment] = {}

    @classmethod
    def for_config(cls, config: Any | None) -> Templates:
        """The lookup of :mod:`rollback.config`'s ``Config.templates_dirs`` (``None``: defaults only)."""
        if config is None:
            return cls()
        dirs = list(config.templates_dirs)
        required = dirs[:1] if config.settings.templates_dir else []
        return cls(dirs, required=required)

    def _env(self, kind: str) -> SandboxedEnvironment:
        if kind not in self._envs:
            from jinja2 import FileSystemLoader, StrictUndefined
            from jinja2.sandbox import SandboxedEnvironment
            from markupsafe import Markup

            def finalize(value: Any) -> Any:
                if value is None:
                    return ""
                if isinstance(value, Markup) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
                    return value
                if kind == "md":
                    return Markup(md_escape(value))
                return visible(value)

            deadline = self._deadline

            class Limited(SandboxedEnvironment):
                """The sandbox, checking the render's time limit at every call and attribute access."""

                def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
                    if time.monotonic() > deadline[0]:
                        raise RenderTooLong()
                    return super().call(__context, __obj, *args, **kwargs)

                def getattr(self, obj: Any, attribute: str) -> Any:
                    if time.monotonic() > deadline[0]:
                        raise RenderTooLong()
                    return super().getattr(obj, attribute)

                def getitem(self, obj: Any, argument: Any) -> Any:
                    if time.monotonic() > deadline[0]:
                        raise RenderTooLong()
                    return super().getitem(obj, argument)

            env = Limited(
                loader=FileSystemLoader([str(d) for d in [*self.dirs, PACKAGE_DIR]]),
                autoescape=kind == "html",
                undefined=StrictUndefined,
                finalize=finalize,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
            )
            env.filters["seconds"] = format_seconds
            env.filters["md"] = lambda value: Markup(md_escape(value))
            self._envs[kind] = env
        return self._envs[kind]

    def origin(self, name: str) -> Path:
        """The file ``name`` resolves to."""
        for directory in [*self.dirs, PACKAGE_DIR]:
            if (directory / name).is_file():
                return directory / name
        raise BadInput(f"no template {name}", f"restore rollback/templates/{name} (reinstall rollback)")

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """Render ``name`` with ``context``; a broken template is one line naming its file."""
        import jinja2

        origin = self.origin(name)
        hint = f"fix {origin}, or delete it to use the default template"
        try:
            template = self._env(_kind(name)).get_template(name)
            with _time_limit(self.render_seconds, self._deadline):
                return template.render(**context)
        except RenderTooLong:
            raise BadInput(f"template {origin}: rendering took longer than {self.render_seconds:g} s and was "
                           "stopped (a loop that never ends?)", hint, path=str(origin)) from None
        except RecursionError:
            raise BadInput(f"template {origin}: it calls itself without end (a macro or include that never "
                           "stops)", hint, path=str(origin)) from None
        except jinja2.TemplateSyntaxError as exc:
            raise BadInput(f"template {origin}:{exc.lineno}: {exc.message}", hint, path=str(origin)) from exc
        except jinja2.TemplateError as exc:
            raise BadInput(f"template {origin}: {' '.join(str(exc).split())}", hint, path=str(origin)) from exc
        except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError) as exc:
            raise BadInput(f"template {origin}: {type(exc).__name__}: {' '.join(str(exc).split())}", hint,
                           path=str(origin)) from exc
