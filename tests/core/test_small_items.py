"""Issue 18, item 7, the small ones that need no server: a template that loops for ever is stopped
after a time limit; the sandbox's ``rollback.toml`` keeps the user's edits when the sandbox writes it
again (``sandbox reset``, or ``up`` on new ports); ``config check`` shows the lock that applies."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from rollback.errors import BadInput
from rollback.sandbox import seed_config
from rollback.templating import Templates
from tests.conftest import CliResult

RunCli = Callable[..., CliResult]

FOREVER = ("{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}"
           "{% endfor %}{% endfor %}{% endfor %}")


@pytest.mark.parametrize("in_main_thread", [True, False])
def test_a_template_that_loops_for_ever_is_stopped(tmp_path: Path, in_main_thread: bool) -> None:
    (tmp_path / "report.md.j2").write_text("# report\n" + FOREVER, encoding="utf-8")
    templates = Templates([tmp_path], render_seconds=0.5)
    caught: list[BaseException] = []

    def render() -> None:
        try:
            templates.render("report.md.j2", {})
        except BaseException as exc:  # whatever it is, the test looks at it
            caught.append(exc)

    if in_main_thread:
        render()
    else:
        worker = threading.Thread(target=render)
        worker.start()
        worker.join(60)
        assert not worker.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], BadInput), caught
    assert caught[0].one_line().startswith(f"template {tmp_path / 'report.md.j2'}: rendering took longer than "
                                           "0.5 s and was stopped (a loop that never ends?)")
    # the limit is per render: the default template renders as usual afterwards
    assert Templates([], render_seconds=0.5).origin("banner.txt.j2").name == "banner.txt.j2"


def test_a_macro_that_calls_itself_for_ever_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "email.txt.j2").write_text("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", encoding="utf-8")
    with pytest.raises(BadInput, match="it calls itself without end"):
        Templates([tmp_path]).render("email.txt.j2", {})


def _write(directory: Path, app_url: str) -> str:
    aws = {"distribution_id": "E2SANDBOX", "edge_function": "fn", "assets_bucket": "bucket", "db_instance": "db"}
    pulumi = {"stack": "sandbox", "project": "p", "backend_url": f"file://{directory}/state"}
    return seed_config.write_config(directory, app_url=app_url, aws=aws, pulumi=pulumi).read_text(encoding="utf-8")


def test_the_sandbox_config_keeps_the_users_edits(tmp_path: Path) -> None:
    first = _write(tmp_path, "http://127.0.0.1:5001")
    path = tmp_path / "rollback.toml"
    edited = first.replace("timeout = 5\n", "timeout = 9  # mine\n") + "\n[env.staging]\nsandbox = true\n"
    path.write_text(edited, encoding="utf-8")
    assert _write(tmp_path, "http://127.0.0.1:5001") == edited  # reset: same ports, the file as the user left it
    moved = _write(tmp_path, "http://127.0.0.1:6002")  # up again on another port: that line follows
    assert moved == edited.replace("http://127.0.0.1:5001", "http://127.0.0.1:6002")
    path.write_text(_write(tmp_path, "http://127.0.0.1:6002"), encoding="utf-8")
    assert "mine" in path.read_text()


def test_config_check_shows_the_top_level_lock(tmp_path: Path, run_cli: RunCli,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "rollback.toml"
    config.write_text('[lock]\nurl = "s3://team-bucket/app"\nttl = 30\n[env.staging]\nsandbox = true\n',
                      encoding="utf-8")
    monkeypatch.setenv("ROLLBACK_CONFIG", str(config))
    shown = run_cli("config", "check", "--json")
    assert shown.code == 0, shown.err
    assert json.loads(shown.out)["settings"]["lock"] == {"url": "s3://team-bucket/app", "ttl": 30.0}
    human = run_cli("config", "check")
    row = next(line for line in human.out.splitlines() if "lock.url" in line)
    assert "s3://team-bucket/app" in row and "(not set)" not in row
