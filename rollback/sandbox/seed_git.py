"""The sandbox's app repository: a bare origin whose hook tells the Vercel emulator about every push, and a
clone to work in."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from rollback.sandbox.seed import Timeline
from rollback.sandbox.vercel_state import DEMO

# The app's repository: a bare "origin" whose post-receive hook tells the Vercel emulator about every push
# to main, as Vercel's Git integration does (a production deployment that builds, then goes live unless a
# rollback paused that), and a clone to work in. `rollback app revert HEAD --push --wait` runs against it.
GIT_FILES = (
    ("Initial commit", {"README.md": "# demo\n", "app/page.tsx": "export default () => <h1>demo</h1>;\n"}),
    ("Add integrations page", {"app/integrations/page.tsx": "export default () => <h1>integrations</h1>;\n"}),
    ("Add new feature", {"app/api/health/route.ts": "export const GET = () => feature.enabled.check();\n"}),
)
HOOK = """#!{python}
# Written by `rollback sandbox up`: what Vercel's Git integration does on a push to main.
import json, subprocess, sys, urllib.request

for line in sys.stdin:
    old, new, ref = line.split()
    if ref != "refs/heads/main" or set(new) == {{"0"}}:
        continue
    subject = subprocess.run(["git", "log", "-1", "--format=%s", new], capture_output=True, text=True).stdout
    body = json.dumps({{"project": {project!r}, "sha": new, "ref": "main", "ready_after": {ready_after},
                       "message": subject.strip()}}).encode()
    request = urllib.request.Request({url!r} + "/_admin/deployments", data=body, method="POST",
                                     headers={{"Content-Type": "application/json"}})
    with urllib.request.urlopen(request, timeout=10) as answer:
        created = json.loads(answer.read())
    print(f"vercel: deployment {{created['url']}} ({{created['id']}}) building for {{new[:12]}}", flush=True)
"""
GIT_READY_AFTER = 1.0  # seconds a pushed commit takes to build in the emulator


_GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Sandbox Developer", "GIT_AUTHOR_EMAIL": "dev@demo.example.com",
            "GIT_COMMITTER_NAME": "Sandbox Developer", "GIT_COMMITTER_EMAIL": "dev@demo.example.com"}


def run_git(cwd: Path, *args: str, when: dt.datetime | None = None) -> str:
    """``git ARGS`` in ``cwd`` as the sandbox's developer (no system or user config read), at ``when``."""
    extra = {"GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()} if when else {}
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **_GIT_ENV, "HOME": str(cwd), **extra},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def seed_git(directory: Path, vercel_url: str, timeline: Timeline) -> dict[str, Any]:
    """``DIR/app.git`` (bare, with the deploy hook) and ``DIR/app`` (a clone whose HEAD is the bad commit)."""
    origin, work = directory / "app.git", directory / "app"
    for path in (origin, work):
        shutil.rmtree(path, ignore_errors=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "HOME": str(directory),
           "GIT_AUTHOR_NAME": "Sandbox Developer", "GIT_AUTHOR_EMAIL": "dev@demo.example.com",
           "GIT_COMMITTER_NAME": "Sandbox Developer", "GIT_COMMITTER_EMAIL": "dev@demo.example.com"}

    def git(*args: str, cwd: Path = work, when: dt.datetime | None = None) -> str:
        extra = {"GIT_AUTHOR_DATE": when.isoformat(), "GIT_COMMITTER_DATE": when.isoformat()} if when else {}
        done = subprocess.run(["git", *args], cwd=cwd, env={**env, **extra}, capture_output=True, text=True,
                              check=True)
        return done.stdout.strip()

    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=directory)
    hook = origin / "hooks" / "post-receive"
    hook.write_text(HOOK.format(python=sys.executable, project=DEMO.project_name, url=vercel_url.rstrip("/"),
                                ready_after=GIT_READY_AFTER), encoding="utf-8")
    hook.chmod(0o755)
    git("init", "-q", "-b", "main", str(work), cwd=directory)
    # The operator's identity lives in the clone, so that `git revert` works from any HOME.
    git("config", "user.name", "Sandbox Operator")
    git("config", "user.email", "oncall@demo.example.com")
    git("remote", "add", "origin", str(origin))
    shas = []
    for (message, files), when in zip(GIT_FILES, (timeline.created, timeline.good_release, timeline.bad_app),
                                      strict=True):
        for name, text in files.items():
            path = work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        git("add", "-A")
        git("commit", "-q", "-m", message, when=when)
        shas.append(git("rev-parse", "HEAD"))
    # Pushed before the hook could deploy it: the emulator's seeded deployments stand for these pushes.
    hook.rename(hook.with_suffix(".off"))
    git("push", "-q", "origin", "main")
    hook.with_suffix(".off").rename(hook)
    git("branch", "-q", "--set-upstream-to=origin/main", "main")
    return {"origin": str(origin), "repo": str(work), "bad_commit": shas[-1], "good_commit": shas[-2],
            "commits": shas}
