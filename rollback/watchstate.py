"""What ``rollback watch`` keeps per environment, beside the run lock: the kill switch and the last
automatic rollback.

- **The kill switch** (``rollback watch --pause [--reason TEXT]`` / ``--resume``): while it is set, a
  watch of the environment keeps reading and posting but acts on nothing.
- **The last automatic rollback**: when a watch last rolled the environment back by itself (and which
  watch, incident and run), for ``--cooldown``.

Each is a small JSON document kept beside the lock file, in the lock directory
(``~/.cache/rollback/locks``, ``$ROLLBACK_LOCK_DIR``), named after the environment's identity as the lock
is (``<digest>.paused.json``, ``<digest>.auto.json``), and, when ``[lock] url`` is set, beside the team
lease in S3 (``<prefix>/locks/<env>.paused.json``, ``<prefix>/locks/<env>.auto.json``) so it holds for
the whole team (a CI runner has no home directory that lasts). The switch is set when either copy is;
``--resume`` removes both.

Reading fails closed: a team copy that cannot be read raises :class:`~rollback.errors.OperationFailed`
and the watch leaves everything to a person rather than act without knowing whether it may.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollback.errors import OperationFailed, RollbackError
from rollback.lock import TeamLock, lock_path

__all__ = ["PAUSED", "Pause", "WatchState"]

PAUSED = "paused.json"
LAST_AUTO = "auto.json"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        return str(os.getuid())


@dataclass(frozen=True)
class Pause:
    """The kill switch as set: by whom, from where, when, why, and where it is kept."""

    by: str
    host: str
    at: str
    reason: str
    where: str  # "local" | "team"

    @classmethod
    def of(cls, body: Mapping[str, Any], where: str) -> Pause:
        return cls(str(body.get("by") or "?"), str(body.get("host") or "?"), str(body.get("at") or "?"),
                   str(body.get("reason") or ""), where)

    def line(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"paused by {self.by}@{self.host} at {self.at}{why}"

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "host": self.host, "at": self.at, "reason": self.reason, "where": self.where}


class WatchState:
    """The kill switch and the last automatic rollback of one environment."""

    def __init__(self, env: str, identity: str, team: TeamLock | None = None,
                 environ: Mapping[str, str] | None = None) -> None:
        self.env = env
        self.team = team
        lock = lock_path(identity, environ)
        self._local = {PAUSED: lock.with_suffix(f".{PAUSED}"), LAST_AUTO: lock.with_suffix(f".{LAST_AUTO}")}

    @classmethod
    def of(cls, config: Any) -> WatchState:
        """The state of ``config``'s environment (a :class:`~rollback.config.Config`)."""
        settings = config.lock_settings
        team = TeamLock(settings.url, settings.ttl) if settings.url else None
        return cls(config.env_name, config.identity, team)

    # ------------------------------------------------------------------ the two copies

    def _key(self, name: str) -> str:
        assert self.team is not None
        return self.team.key("locks", f"{self.env}.{name}")

    def _read_local(self, name: str) -> dict[str, Any] | None:
        try:
            body = json.loads(self._local[name].read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: still there (a switch nobody can read is set)
        return body if isinstance(body, dict) else {}

    def _write_local(self, name: str, body: Mapping[str, Any]) -> None:
        path = self._local[name]
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(dict(body), sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)

    def _read_team(self, name: str) -> dict[str, Any] | None:
        if self.team is None:
            return None
        try:
            found = self.team.store().read(self._key(name))
        except RollbackError as exc:
            raise OperationFailed(f"the watch state of env {self.env} in {self.team.url} could not be read: "
                                  f"{exc.message}", "check the S3 bucket and the credentials") from exc
        return dict(found.body) if found is not None else None

    def _write_team(self, name: str, body: Mapping[str, Any]) -> None:
        if self.team is None:
            return
        store, key = self.team.store(), self._key(name)
        data = json.dumps(dict(body), sort_keys=True).encode()
        try:
            for _ in range(3):  # put if absent, else replace what is there (If-Match on its ETag)
                current = store.read(key)
                written = store.create(key, data) if current is None else store.replace(key, data, current.etag)
                if written is not None:
                    return
        except RollbackError as exc:
            raise OperationFailed(f"the watch state of env {self.env} could not be written to {self.team.url}: "
                                  f"{exc.message}", "check the S3 bucket and the credentials") from exc
        raise OperationFailed(f"the watch state of env {self.env} in {self.team.url} kept changing while it was "
                              "written", "try again")

    def _delete_team(self, name: str) -> bool:
        if self.team is None:
            return False
        store, key = self.team.store(), self._key(name)
        try:
            for _ in range(3):
                current = store.read(key)
                if current is None:
                    return False
                if store.delete(key, current.etag):
                    return True
        except RollbackError as exc:
            raise OperationFailed(f"the kill switch of env {self.env} in {self.team.url} could not be removed: "
                                  f"{exc.message}", "check the S3 bucket and the credentials") from exc
        raise OperationFailed(f"the kill switch of env {self.env} in {self.team.url} kept changing",
                              "try again")

    # ------------------------------------------------------------------ the kill switch

    def pause(self, reason: str = "", *, by: str | None = None) -> Pause:
        """Set the kill switch (here, and for the team with ``[lock] url``)."""
        body = {"env": self.env, "by": by or _who(), "host": socket.gethostname(), "at": _now(),
                "reason": reason}
        self._write_local(PAUSED, body)
        self._write_team(PAUSED, body)
        return Pause.of(body, "team" if self.team is not None else "local")

    def resume(self) -> list[str]:
        """Remove the kill switch everywhere it is kept; where it was removed from."""
        removed = []
        path = self._local[PAUSED]
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(str(path))
        if self._delete_team(PAUSED):
            removed.append(f"{self.team.url if self.team else ''}/locks/{self.env}.{PAUSED}")
        return removed

    def paused(self) -> Pause | None:
        """The kill switch, when it is set (the team's copy first); raises when the team's cannot be read."""
        team = self._read_team(PAUSED)
        if team is not None:
            return Pause.of(team, "team")
        local = self._read_local(PAUSED)
        return Pause.of(local, "local") if local is not None else None

    # ------------------------------------------------------------------ the last automatic rollback

    def last_auto(self) -> dict[str, Any] | None:
        """The newest automatic rollback record of either copy; raises when the team's cannot be read."""
        found = [body for body in (self._read_team(LAST_AUTO), self._read_local(LAST_AUTO)) if body]
        return max(found, key=lambda body: str(body.get("at") or "")) if found else None

    def record_auto(self, **fields: Any) -> dict[str, Any]:
        """Record an automatic rollback that starts now (both copies; raises when the team's fails)."""
        body = {"env": self.env, "at": _now(), "by": _who(), "host": socket.gethostname(), **fields}
        self._write_local(LAST_AUTO, body)
        self._write_team(LAST_AUTO, body)
        return body

    def local_paths(self) -> dict[str, Path]:
        return dict(self._local)
