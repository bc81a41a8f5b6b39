"""The sandbox's owner process: one per sandbox directory, started detached by ``rollback sandbox up``.

It owns everything the sandbox runs, so that ``rollback sandbox down`` has one
process to stop and nothing can outlive it:

- the **moto server** (with :mod:`rollback.sandbox.cloudfront` and
  :mod:`rollback.sandbox.cloudwatch` semantics) runs *in* this process, which
  lets the seed move moto's own timestamps back (:func:`rollback.sandbox.seed_aws.backdate_aws`);
- the **Vercel emulator** and the **app server** are child processes that die
  with it (``PR_SET_PDEATHSIG``);
- the **PostgreSQL cluster** (``pg_ctl``'s postmaster) is watched by the
  watchdog of :func:`rollback.sandbox.postgres.start_postgres`, which stops it
  and removes its directory when this process dies without stopping it (SIGKILL).

``DIR/supervisor.lock`` is held (``flock``) for the process's whole life: a
second supervisor for the same directory exits at once, and anyone can tell
whether the owner is alive by trying the lock. State goes to
``DIR/sandbox.json`` (written atomically, mode 0600: it holds the sandbox's
throwaway passwords): ``starting`` -> ``ready`` (or ``failed``) ->
``stopping`` -> ``stopped``. SIGTERM, SIGINT and SIGHUP stop everything;
SIGUSR1 re-seeds the world (``generation`` goes up by one when done). Each seed reads
``DIR/seed.json`` (written by ``up`` and ``reset``): ``{"rolling": true}`` seeds the bad app
release as the canary of a Vercel rolling release at 10 % instead of a full production deployment.

Run by ``rollback sandbox up`` as::

    python -m rollback.sandbox.supervisor --dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rollback.sandbox import processes, vercel_state
from rollback.sandbox.processes import ProcessRef, process_ref

__all__ = ["SEED_FILE", "STATE_FILE", "lock_holder", "main", "read_seed_options", "read_state", "write_seed_options",
           "write_state"]

STATE_FILE = "sandbox.json"
LOCK_FILE = "supervisor.lock"
WORLD_FILE = "world.json"
SEED_FILE = "seed.json"  # how to seed the next world: {"rolling": bool}
log = logging.getLogger("rollback.sandbox.supervisor")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Atomically replace ``DIR/sandbox.json`` (0600)."""
    path = directory / STATE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, allow_nan=False)
        handle.write("\n")
    os.replace(tmp, path)


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_seed_options(directory: Path, *, rolling: bool) -> None:
    """How the supervisor seeds the next world (``up``, ``reset``)."""
    _write_json(directory / SEED_FILE, {"rolling": rolling})


def read_seed_options(directory: Path) -> dict[str, Any]:
    try:
        found = json.loads((directory / SEED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"rolling": False}
    return {"rolling": bool(found.get("rolling"))} if isinstance(found, dict) else {"rolling": False}


def _write_json(path: Path, document: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Supervisor:
    """Starts, seeds, watches and stops one sandbox."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.logs = directory / "logs"
        self.stopping = threading.Event()
        self.reseed_requested = threading.Event()
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.refs: dict[str, ProcessRef] = {"supervisor": process_ref("supervisor", os.getpid())}
        self.ports: dict[str, int] = {}
        self.moto: Any = None
        self.cluster: Any = None
        self._pg_result: dict[str, Any] = {}
        self._pg_root = Path()
        self._pg_thread = threading.Thread()
        self.token = "sandbox" + secrets.token_hex(12)
        self.hook_token = secrets.token_hex(16)  # the incident channel's webhook URL is a secret, as Slack's is
        self.lock_inode = -1
        self.state: dict[str, Any] = {
            "version": 1, "state": "starting", "dir": str(directory), "started_at": _now(), "ready_at": None,
            "seconds_to_ready": None, "generation": 0, "error": None, "processes": {}, "pids": {}, "ports": {},
            "urls": {}, "env": {}, "postgres": {}, "world": {},
            "logs": {name: str(self.logs / f"{name}.log") for name in ("supervisor", "vercel", "app")},
        }
        self._started = time.monotonic()

    # ---------------------------------------------------------------- state
    def owns_directory(self) -> bool:
        """Whether ``DIR/supervisor.lock`` is still the file this process locked: a sandbox directory
        deleted (or replaced) under a running supervisor must not get its state written over."""
        try:
            return os.stat(self.dir / LOCK_FILE).st_ino == self.lock_inode
        except OSError:
            return False

    def save(self, **changes: Any) -> None:
        self.state.update(changes)
        if not self.owns_directory():
            return
        self.state["processes"] = {name: ref.to_dict() for name, ref in self.refs.items()}
        self.state["pids"] = {name: ref.pid for name, ref in self.refs.items()}
        self.state["pids"]["moto"] = os.getpid()
        self.state["ports"] = dict(self.ports)
        write_state(self.dir, self.state)

    # ---------------------------------------------------------------- start
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "ab") as log_file:
            # From the main thread: PR_SET_PDEATHSIG follows the thread that forked.
            child = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=log_file,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                     preexec_fn=processes.die_with_parent, cwd=str(self.dir))
        self.children[name] = child
        self.refs[name] = process_ref(name, child.pid)

    def start(self) -> None:
        from rollback.sandbox import seed

        self.ports = {"moto": processes.free_port(), "vercel": processes.free_port(), "app": processes.free_port()}
        moto_url = f"http://127.0.0.1:{self.ports['moto']}"
        vercel_url = f"http://127.0.0.1:{self.ports['vercel']}"
        self._spawn("vercel", ["-m", "rollback.sandbox.vercel", "--port", str(self.ports["vercel"]),
                               "--token", self.token, "--seed", "demo",
                               "--job-seconds", str(seed.VERCEL_JOB_SECONDS)])
        from rollback.sandbox.aws import moto_environment

        _lean_moto()

        aws_env = moto_environment(moto_url)
        os.environ.update(aws_env)
        # Hermetic: the user's ~/.aws must not redirect or re-credential the sandbox's clients.
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
        os.environ.pop("AWS_PROFILE", None)
        self._spawn("app", ["-m", "rollback.sandbox.app", "--port", str(self.ports["app"]), "--vercel-url", vercel_url,
                            "--project", vercel_state.DEMO.project_name, "--world", str(self.dir / WORLD_FILE)],
                    env={"SANDBOX_HOOK_TOKEN": self.hook_token})
        self.save()

        # The cluster goes into a directory recorded before it exists, so that `down` finds (and removes)
        # it whatever moment this process is killed at.
        pg_root = Path(tempfile.mkdtemp(prefix="rollback-sandbox-pg-"))
        os.chmod(pg_root, 0o755)  # the server runs as the postgres OS user when we are root
        self.save(postgres={"root": str(pg_root)})
        self._pg_root = pg_root
        self._pg_thread = threading.Thread(target=self._start_postgres, name="postgres", daemon=True)
        self._pg_thread.start()

        from rollback.sandbox.aws import start_moto

        self.moto = start_moto(self.ports["moto"], deploy_after_seconds=seed.CLOUDFRONT_DEPLOY_SECONDS)
        log.info("moto serving at %.2f s", time.monotonic() - self._started)
        for name in ("vercel", "app"):
            child = self.children[name]
            if not processes.wait_for_port(self.ports[name], timeout=60, alive=lambda c=child: c.poll() is None):
                raise RuntimeError(f"the {name} server did not start (see {self.logs / (name + '.log')})")
        log.info("vercel and app serving at %.2f s", time.monotonic() - self._started)
        app_url = f"http://127.0.0.1:{self.ports['app']}"
        self.state["env"] = {
            "ROLLBACK_CONFIG": str(self.dir / "rollback.toml"),
            "ROLLBACK_ENV": seed.ENV,
            **aws_env,
            "VERCEL_API_URL": vercel_url,
            "VERCEL_TOKEN": self.token,
            "VERCEL_ORG_ID": vercel_state.DEMO.team_id,
            "VERCEL_PROJECT_ID": vercel_state.DEMO.project_id,
            "VERCEL_SCOPE": vercel_state.DEMO.team_slug,
            "VERCEL_ARGS": f"--api {vercel_url} --token {self.token} --scope {vercel_state.DEMO.team_slug}",
            "APP_URL": app_url,
            seed.WEBHOOK_ENV: f"{app_url}/_sandbox/hooks/{self.hook_token}",
        }
        self.save(urls={"aws": moto_url, "vercel": vercel_url, "app": app_url})

    def _start_postgres(self) -> None:
        from rollback.sandbox.postgres import start_postgres

        try:
            self._pg_result["cluster"] = start_postgres(base_dir=self._pg_root)
        except BaseException as exc:  # reported by the thread that waits for it
            self._pg_result["error"] = exc

    def wait_for_postgres(self) -> Any:
        """The cluster, once started (the first seed waits for it in its database thread)."""
        if self.cluster is not None:
            return self.cluster
        self._pg_thread.join(timeout=120)
        if "error" in self._pg_result:
            raise RuntimeError(f"PostgreSQL did not start: {self._pg_result['error']}")
        if "cluster" not in self._pg_result:
            raise RuntimeError("PostgreSQL did not start within 120 s")
        cluster = self._pg_result["cluster"]
        log.info("postgres ready at %.2f s", time.monotonic() - self._started)
        self.ports["postgres"] = cluster.port
        postmaster = _postmaster_pid(cluster.data_dir)
        if postmaster:
            self.refs["postgres"] = process_ref("postgres", postmaster)
        if cluster._watchdog is not None:
            self.refs["postgres-watchdog"] = process_ref("postgres-watchdog", cluster._watchdog.pid)
        self.state["env"]["DATABASE_URL"] = cluster.url("app", "app")
        order = list(self.state["env"])
        # DATABASE_URL right after the AWS variables, where `status` lists it.
        order.insert(order.index("VERCEL_API_URL"), order.pop(order.index("DATABASE_URL")))
        self.state["env"] = {k: self.state["env"][k] for k in order}
        self.state["urls"]["database"] = f"postgresql://app@127.0.0.1:{cluster.port}/app"
        self.state["postgres"] = {"root": str(self._pg_root), "base": str(cluster.base),
                                  "data_dir": str(cluster.data_dir), "bin_dir": str(cluster.bin_dir),
                                  "port": cluster.port, "major": cluster.major}
        self.cluster = cluster
        self.save()
        return cluster

    # ----------------------------------------------------------------- seed
    def seed(self) -> dict[str, Any]:
        from rollback.sandbox import seed, seed_aws, seed_config, seed_db, seed_git, seed_pulumi, seed_vercel

        started = time.monotonic()
        timeline = seed.Timeline(dt.datetime.now(dt.UTC))
        rolling = bool(read_seed_options(self.dir)["rolling"])
        if self.state.get("generation"):
            import urllib.request

            request = urllib.request.Request(f"{self.state['urls']['aws']}/moto-api/reset", method="POST")
            with urllib.request.urlopen(request, timeout=30):
                pass
            (self.dir / WORLD_FILE).unlink(missing_ok=True)
        results: dict[str, Any] = {}

        def in_thread(name: str, func: Any, *args: Any) -> threading.Thread:
            def run() -> None:
                try:
                    results[name] = func(*args)
                except BaseException as exc:
                    results[name] = exc

            thread = threading.Thread(target=run, name=f"seed-{name}", daemon=True)
            thread.start()
            return thread

        def database() -> dict[str, Any]:
            return seed_db.seed_database(self.wait_for_postgres(), self.dir, timeline)

        threads = [in_thread("vercel", seed_vercel.seed_vercel, self.state["urls"]["vercel"], rolling),
                   in_thread("database", database),
                   in_thread("git", seed_git.seed_git, self.dir, self.state["urls"]["vercel"], timeline)]
        import boto3

        _warm_backends()  # no-op after the first time
        log.info("moto backends ready at %.2f s", time.monotonic() - self._started)
        aws = seed_aws.seed_aws(boto3.session.Session(), timeline, rolling)
        seed_aws.backdate_aws(aws, timeline)
        log.info("AWS seeded in %.2f s", time.monotonic() - started)
        pulumi = seed_pulumi.write_pulumi(self.dir, aws, timeline)
        seed_config.write_config(self.dir, app_url=self.state["urls"]["app"], aws=aws, pulumi=pulumi)
        for thread in threads:
            thread.join(timeout=120)
        log.info("Vercel, database and Pulumi seeded in %.2f s", time.monotonic() - started)
        for name in ("vercel", "database", "git"):
            if isinstance(results.get(name), BaseException):
                raise RuntimeError(f"seeding {name} failed: {results[name]}") from results[name]
            if name not in results:
                raise RuntimeError(f"seeding {name} did not finish within 120 s")
        world = {"env": seed.ENV, "rolling": rolling, "timeline": timeline.to_dict(), "vercel": results["vercel"],
                 "aws": aws,
                 "database": results["database"], "pulumi": pulumi, "git": results["git"],
                 "seconds": round(time.monotonic() - started, 3)}
        _write_json(self.dir / WORLD_FILE, world)
        return world

    # ----------------------------------------------------------------- run
    def watch(self) -> None:
        """Until asked to stop: re-seed on SIGUSR1, note children that died."""
        while not self.stopping.wait(0.25):
            if self.reseed_requested.is_set():
                self.reseed_requested.clear()
                try:
                    world = self.seed()
                    self.save(world=world, generation=self.state["generation"] + 1, state="ready", error=None)
                except Exception as exc:
                    log.exception("re-seeding failed")
                    self.save(state="failed", error=f"re-seeding failed: {exc}")
            if not self.owns_directory():
                log.error("%s was removed or replaced under the running sandbox: stopping", self.dir)
                return
            dead = [name for name, child in self.children.items() if child.poll() is not None]
            if dead and self.state["state"] == "ready":
                log.error("stopped unexpectedly: %s", ", ".join(dead))
                self.save(state="degraded", error=f"stopped unexpectedly: {', '.join(dead)} (see {self.logs})")

    def stop(self) -> None:
        started = time.monotonic()
        with contextlib.suppress(Exception):
            self.save(state="stopping")
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 5
        for child in self.children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            if child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        log.info("children stopped in %.2f s", time.monotonic() - started)
        if self.moto is not None:
            with contextlib.suppress(Exception):
                self.moto.stop()
        log.info("moto stopped in %.2f s", time.monotonic() - started)
        if self._pg_thread.is_alive():  # still starting: let it finish, then stop what it started
            self._pg_thread.join(timeout=60)
        cluster = self.cluster or self._pg_result.get("cluster")
        if cluster is not None:
            cluster.stop(remove=True)
        log.info("postgres stopped in %.2f s", time.monotonic() - started)
        root = self.state.get("postgres", {}).get("root")
        if root:
            shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(Exception):
            self.save(state="stopped", stopped_at=_now())


def _lean_moto() -> None:
    """Keep moto's EC2 data (imported by its RDS backend) to what the sandbox uses: no default AMIs,
    instance type offerings of us-east-1 only. Saves seconds of JSON parsing at start-up."""
    from rollback.sandbox.seed import REGION

    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    amis = Path(tempfile.gettempdir()) / "rollback-sandbox-no-amis.json"
    if not amis.exists():
        amis.write_text("[]\n", encoding="utf-8")
    os.environ.setdefault("MOTO_AMIS_PATH", str(amis))
    import moto.utilities.utils as moto_utils

    load_resource = moto_utils.load_resource

    def lean_load_resource(resource: str) -> Any:
        if "instance_type_offerings/" in resource and f"/{REGION}." not in resource:
            return []
        return load_resource(resource)

    moto_utils.load_resource = lean_load_resource


def _warm_backends() -> None:
    """Create the moto backends the seed uses now, not inside its first requests."""
    from moto.backends import get_backend

    from rollback.sandbox.seed import ACCOUNT, REGION

    for service in ("iam", "lambda", "s3", "cloudfront", "cloudwatch", "rds", "sns"):
        backend: Any = get_backend(service)
        region = "aws" if service in ("s3", "iam") else ("global" if service == "cloudfront" else REGION)
        with contextlib.suppress(KeyError):
            backend[ACCOUNT][region]


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def _take_lock(path: Path) -> Any:
    """Lock ``path`` for this process's life and write our identity into it (for ``down``)."""
    import fcntl

    handle = open(path, "a+")  # noqa: SIM115 - held for the process's whole life
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(process_ref("supervisor", os.getpid()).to_dict()) + "\n")
    handle.flush()
    return handle


def lock_holder(directory: Path) -> ProcessRef | None:
    """The supervisor that wrote ``DIR/supervisor.lock`` (whether or not it still runs)."""
    try:
        return ProcessRef.from_dict(json.loads((directory / LOCK_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rollback.sandbox.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the sandbox directory")
    args = parser.parse_args(argv)
    directory = args.dir.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s supervisor: %(message)s")
    for noisy in ("werkzeug", "botocore", "boto3", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lock = _take_lock(directory / LOCK_FILE)
    if lock is None:
        log.error("another supervisor owns %s", directory)
        return 3
    supervisor = Supervisor(directory)
    supervisor.lock_inode = os.fstat(lock.fileno()).st_ino

    def request_stop(signum: int, frame: Any) -> None:
        supervisor.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, request_stop)
    signal.signal(signal.SIGUSR1, lambda *_: supervisor.reseed_requested.set())
    code = 0
    try:
        supervisor.save()
        supervisor.start()
        if supervisor.stopping.is_set():
            return 0
        world = supervisor.seed()
        seconds = round(time.monotonic() - supervisor._started, 3)
        # CPU time too: wall time on a shared 2-core machine says more about the neighbours than about us.
        cpu = round(time.process_time(), 3)
        supervisor.save(state="ready", ready_at=_now(), seconds_to_ready=seconds, cpu_seconds_to_ready=cpu,
                        world=world, generation=1)
        log.info("ready in %.2f s (%.2f s of CPU in this process)", seconds, cpu)
        supervisor.watch()
    except Exception as exc:
        log.exception("the sandbox failed")
        with contextlib.suppress(Exception):
            supervisor.save(state="failed", error=f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        supervisor.stop()
        if code:
            with contextlib.suppress(Exception):
                supervisor.save(state="failed")
        lock.close()
    return code


if __name__ == "__main__":
    exit_code = main()
    # Everything is stopped and saved, the lock released: skip the interpreter's teardown of moto's
    # and boto's module graph, which takes seconds on a busy machine while `down` waits for the pid.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
