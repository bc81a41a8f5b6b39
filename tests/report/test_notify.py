"""Notifications against a local webhook receiver (a thread HTTP server, real HTTP): the posts a
rollback makes, what they never contain, and that a broken receiver never stops the rollback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rollback.config import Config, load_config
from rollback.journal import Journal, read_run
from rollback.notify import Notifier, slack_escape
from rollback.plan import Plan, Step
from tests.conftest import CliResult
from tests.report.conftest import Receiver

Run = Callable[..., CliResult]

TOKEN = "vercel_tok_notify_5e4d3c2b1a"
DB_PASSWORD = "dbpw_Zr9Qx77"


def _config(tmp_path: Path, receiver: Receiver | None, monkeypatch: pytest.MonkeyPatch, *,
            notify: str = '[env.production.notify]\nwebhook_env = "SLACK_WEBHOOK_URL"\n') -> Config:
    path = tmp_path / "rollback.toml"
    path.write_text('default_env = "production"\n[env.production.vercel]\nproject = "my-app"\n' + notify,
                    encoding="utf-8")
    environ = {"VERCEL_TOKEN": TOKEN, "DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@db.internal/app"}
    if receiver is not None:
        environ["SLACK_WEBHOOK_URL"] = receiver.url
    monkeypatch.setenv("VERCEL_TOKEN", TOKEN)
    config = load_config(path, environ=environ)
    config.database_url()  # registers the password, as any command touching the database does
    return config


def _plan() -> Plan:
    return Plan.of("rollback app, db on production", "production", [
        Step("app.rollback", "t.ok", "production: dpl_bad -> dpl_good (instant rollback)"),
        Step("app.wait", "t.ok", "wait until app.example.com serves dpl_good"),
        Step("db.restore", "t.long", f"restore into postgresql://app:{DB_PASSWORD}@db.internal/app_restore"),
    ])


def _rollback(notifier: Notifier, plan: Plan, journal: Journal, *, long_step: Callable[[], Any] | None = None
              ) -> list[str]:
    """What the incident's `run` does around its plan: start, each step watched, each layer
    posted, end. Returns the steps done (the rollback's own work)."""
    layers = {"app.rollback": "app", "app.wait": "app", "db.restore": "db"}
    notifier.start("P1", {**plan.to_dict(), "steps": [{**s.to_dict(), "layer": layers[s.id]} for s in plan.steps]})
    done: list[str] = []
    for layer in ("app", "db"):
        for step in plan.steps:
            if layers[step.id] != layer:
                continue
            journal.write("step_started", step=step.id)
            with notifier.running(step):
                if step.action == "t.long" and long_step is not None:
                    long_step()
            journal.write("step_finished", step=step.id, result={})
            done.append(step.id)
        notifier.layer_done(layer, {"status": "restored" if layer == "app" else "done", "seconds": 12.5,
                                    "steps": sum(1 for s in layers.values() if s == layer)})
    notifier.end(restored=True, verified=True, metrics={"detect": 210.0, "decide": 90.0, "rollback": 280.0,
                                                         "verify": 680.0, "total": 1050.0},
                 targets={"detect": 300, "decide": 120, "rollback": 600, "verify": 300, "total": 900})
    return done


def _secrets_absent(receiver: Receiver, *texts: str) -> None:
    everything = b"".join(receiver.raw).decode() + "".join(texts)  # every body, stderr, the journal
    for secret in (TOKEN, DB_PASSWORD, receiver.url, "s3cretWebhookPath42"):
        assert secret not in everything


def test_start_layer_and_end_posts_arrive_without_secrets(receiver: Receiver, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, receiver, monkeypatch)
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier = Notifier.from_config(config, incident="INC-20261128T091530Z-production", journal=journal)
    assert notifier.enabled
    done = _rollback(notifier, _plan(), journal)
    report = notifier.close(timeout=10)
    journal.finish("succeeded", 0)
    assert done == ["app.rollback", "app.wait", "db.restore"]
    assert (report.sent, report.failed, report.dropped, report.unsent) == (4, 0, 0, 0)
    texts = receiver.texts()
    assert all(set(post) == {"text"} for post in receiver.posts)  # Slack-compatible {"text": ...}
    assert texts[0].startswith("*production* (INC-20261128T091530Z-production): P1 rollback started: "
                               "rollback app, db on production, 3 steps across app, db\n1. [app] production: "
                               "dpl_bad -&gt; dpl_good (instant rollback)")
    assert "3. [db] restore into postgresql://app:***@db.internal/app_restore" in texts[0]
    assert texts[1] == "*production* (INC-20261128T091530Z-production): layer app: restored in 12 s (2 steps)"
    assert texts[2].endswith("layer db: done in 12 s (1 step)")
    assert texts[3].endswith("rollback finished: service restored, verification passed\ntime to detect 3 min 30 s "
                             "(met); time to decide 1 min 30 s (met); time to roll back 4 min 40 s (met); time to "
                             "verify 11 min 20 s (missed, target 5 min); total recovery time 17 min 30 s (missed, "
                             "target 15 min)")
    _secrets_absent(receiver, capsys.readouterr().err, journal.path.read_text())


def test_a_receiver_answering_500_does_not_stop_the_rollback(receiver: Receiver, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    receiver.mode = "500"
    config = _config(tmp_path, receiver, monkeypatch)
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier = Notifier.from_config(config, journal=journal)
    done = _rollback(notifier, _plan(), journal)
    report = notifier.close(timeout=10)
    journal.finish("succeeded", 0)
    assert done == ["app.rollback", "app.wait", "db.restore"]
    assert report.sent == 0 and report.failed == 4
    assert len(receiver.raw) == 4 * 3  # each post tried 3 times (bounded), then given up
    notes = [e for e in read_run(journal.path).entries if e["event"] == "note"]
    assert notes and all(n["message"] == "notification not delivered (HTTP 500); the rollback goes on" for n in notes)
    assert all(n["kind"] == "notify" for n in notes)
    err = capsys.readouterr().err
    assert "warning: notification not delivered (HTTP 500); the rollback goes on" in err
    assert read_run(journal.path).status == "succeeded"
    _secrets_absent(receiver, err, journal.path.read_text())


def test_a_hanging_receiver_does_not_stop_the_rollback(receiver: Receiver, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    receiver.mode = "hang"
    config = _config(tmp_path, receiver, monkeypatch,
                     notify='[env.production.notify]\nwebhook_env = "SLACK_WEBHOOK_URL"\ntimeout = 0.3\n')
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier = Notifier.from_config(config, journal=journal)
    done = _rollback(notifier, _plan(), journal)  # returns although no post ever gets an answer
    report = notifier.close(timeout=1.0)  # the deadline: what is not out by then stays unsent
    journal.finish("succeeded", 0)
    assert done == ["app.rollback", "app.wait", "db.restore"]
    assert report.sent == 0 and report.failed + report.unsent >= 1
    messages = [e["message"] for e in read_run(journal.path).entries if e["event"] == "note"]
    assert any(m.startswith("notification not delivered (ReadTimeout") for m in messages) or \
        any("not sent before the 1 s deadline" in m for m in messages)
    _secrets_absent(receiver, capsys.readouterr().err, journal.path.read_text())


def test_retry_after_is_honoured(receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.mode = "429-once"
    notifier = Notifier.from_config(_config(tmp_path, receiver, monkeypatch))
    notifier.post("hello")
    report = notifier.close(timeout=10)
    assert (report.sent, report.failed) == (1, 0)
    assert len(receiver.raw) == 2
    assert receiver.texts() == ["*production*: hello"]


def test_heartbeats_while_a_long_step_runs(receiver: Receiver, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An RDS restore takes 10-15 minutes: "still running" posts come while it runs (here the
    interval is 0.3 s instead of 5 minutes; the step lasts until one has arrived)."""
    config = _config(tmp_path, receiver, monkeypatch,
                     notify='[env.production.notify]\nwebhook_env = "SLACK_WEBHOOK_URL"\nheartbeat_minutes = 0.005\n')
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier = Notifier.from_config(config, journal=journal)
    assert notifier.heartbeat_every == pytest.approx(0.3)

    def long_step() -> None:
        assert receiver.wait_for(lambda r: any("still running" in t for t in r.texts()), timeout=20)

    _rollback(notifier, _plan(), journal, long_step=long_step)
    notifier.close(timeout=10)
    journal.finish("succeeded", 0)
    beats = [t for t in receiver.texts() if "still running" in t]
    assert beats[0].startswith("*production*: still running: restore into postgresql://app:***@db.internal/"
                               "app_restore (")
    assert all("restore into" in t for t in beats)  # only while the long step ran


def test_an_explicit_heartbeat_is_rate_limited(receiver: Receiver, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = Notifier.from_config(_config(tmp_path, receiver, monkeypatch))
    assert notifier.heartbeat("db.restore", 301.0) is True
    assert notifier.heartbeat("db.restore", 302.0) is False  # at most once every 5 minutes
    notifier.close(timeout=10)
    assert receiver.texts() == ["*production*: still running: db.restore (5 min 1 s so far)"]


def test_a_full_queue_drops_posts_instead_of_waiting(receiver: Receiver) -> None:
    receiver.mode = "hang"
    notifier = Notifier(receiver.url, env="production", timeout=0.5, queue_size=1, attempts=1,
                        stderr=lambda line: None)
    for number in range(5):
        notifier.post(f"post {number}")
    assert notifier.report.dropped >= 3
    notifier.close(timeout=0.5)


def test_text_from_outside_cannot_ping_or_link() -> None:
    assert slack_escape("<!channel> <https://evil|click> & co\nnext") == \
        "&lt;!channel&gt; &lt;https://evil|click&gt; &amp; co next"


def test_without_notify_section_nothing_is_posted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = Notifier.from_config(_config(tmp_path, None, monkeypatch, notify=""))
    assert not notifier.enabled
    notifier.start("P0", _plan())
    notifier.step_started("x")
    notifier.end(restored=True, verified=None)
    assert notifier._thread is None  # no thread, no socket
    assert notifier.close(timeout=1).to_dict() == {"enabled": False, "queued": 0, "sent": 0, "failed": 0,
                                                   "dropped": 0, "unsent": 0}


def test_unset_variable_is_said_once_and_journaled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    notifier = Notifier.from_config(_config(tmp_path, None, monkeypatch), stderr=lines.append)
    assert not notifier.enabled
    assert lines == ["warning: notifications are configured but $SLACK_WEBHOOK_URL is not set: nothing will be "
                     "posted"]
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier.attach(journal)  # notes kept until a journal is there
    journal.finish("succeeded", 0)
    notes = [e["message"] for e in read_run(journal.path).entries if e["event"] == "note"]
    assert notes == ["notifications are configured but $SLACK_WEBHOOK_URL is not set: nothing will be posted"]


def test_config_check_masks_the_webhook(run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        receiver: Receiver) -> None:
    _config(tmp_path, receiver, monkeypatch)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", receiver.url)
    result = run_cli("--config", str(tmp_path / "rollback.toml"), "config", "check", "--json")
    assert result.code == 0, result.err
    document = json.loads(result.out)
    assert document["secrets"]["SLACK_WEBHOOK_URL"] == "***"
    assert document["settings"]["notify"] == {"webhook_env": "SLACK_WEBHOOK_URL", "heartbeat_minutes": 5.0,
                                              "timeout": 5.0}
    assert "s3cretWebhookPath42" not in result.out + result.err


@pytest.mark.parametrize(("section", "message"), [
    ('webhook_url = "https://hooks.slack.com/services/T0/B0/xyz"',
     "env.production.notify.webhook_url: secrets must not be written in the config file"),
    ('webhook_env = "not a name"', "env.production.notify.webhook_env: String should match pattern"),
    ("heartbeat_minutes = 0", "env.production.notify.heartbeat_minutes: Input should be greater than 0"),
])
def test_bad_notify_config_is_one_line(run_cli: Run, tmp_path: Path, section: str, message: str) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(f'[env.production.vercel]\nproject = "p"\n[env.production.notify]\n{section}\n',
                    encoding="utf-8")
    result = run_cli("--config", str(path), "config", "check")
    assert result.code == 2
    assert message in result.err and result.err.count("\n") == 1
    assert "hooks.slack.com" not in result.err


def test_notes_never_follow_run_finished(receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.mode = "500"
    journal = Journal.start(tmp_path / "runs", command="rollback run", env="production")
    notifier = Notifier.from_config(_config(tmp_path, receiver, monkeypatch), journal=journal,
                                    stderr=lambda line: None)
    notifier.post("late")
    journal.finish("succeeded", 0)  # the caller finished its journal before closing the notifier
    notifier.close(timeout=10)
    assert read_run(journal.path).entries[-1]["event"] == "run_finished"
