"""A recorded-CLI double of the ``pulumi`` executable (a test double, NOT the Pulumi CLI).

It answers exactly the invocations the Automation API (pulumi SDK 3.x,
``pulumi/automation/_local_workspace.py`` and ``_stack.py``) makes, in the
CLI's real output formats, against a self-managed backend directory given by
``PULUMI_BACKEND_URL=file://...`` (the layout of ``pkg/backend/diy``):

- ``version`` -> ``v3.205.0`` (at or below 3.205 the SDK reads the event log
  from a file, which this double writes);
- ``stack select --stack S`` (``S``, ``project/S`` or ``organization/project/S``); unknown
  stacks fail with ``no stack named 'S' found``, another project's with the CLI's message;
- ``stack ls --json``: the project's stacks;
- ``stack history --json [--show-secrets] --page-size N --page P`` -> the
  ``updateInfoJSON`` array, newest first, version 0 as DIY backends report it;
- ``stack export --show-secrets`` -> ``{"version": 3, "deployment": {...}}``;
- ``stack output --json [--show-secrets]``;
- ``config --show-secrets --json``, ``config set-all --plaintext k=v --secret k=v``,
  ``config rm-all k...`` on ``Pulumi.<stack>.yaml`` (``stackConfigDir`` honoured);
- ``--config-file F`` on any command: the stack config file to use instead of ``Pulumi.<stack>.yaml``;
- ``preview ... --save-plan P --event-log F``: writes the plan, the event log
  (prelude, summary and the closing cancel event) and a ``--diff`` style listing;
- ``up --yes --skip-preview ... --plan P``: refuses like the CLI while the stack
  is locked (``the stack is currently locked by 1 lock(s)``) or when the plan
  was saved for another config; otherwise records a new update in the backend
  (history + checkpoint, the checkpoint of the update whose config it restores);
  with ``--target URN`` (repeated) only those resources change, as the CLI's
  ``--target`` ("an exclusive list of resource URNs to update").

The plan and ``preview --json`` carry values, in the CLI's formats
(``apitype.DeploymentPlanV1``: each resource plan's ``goal.inputDiff`` holds the new value of
each changed top-level input under ``adds``/``updates``, removed ones under ``deletes``;
``preview --json``'s steps carry ``oldState.inputs`` and ``newState.inputs``; secrets as the
``4dabf18193072939515e22adb298388d`` signature object, ``[secret]`` as the ciphertext in the
preview): the double's "program" puts the config's release, edge version and origin secret into
the distribution's inputs, and a change of a database restore key
(``dbRestoreFromSnapshot``/``dbRestoreToTime``/``dbRestoreGeneration``) replaces the RDS instance
(a new identifier), as the real program does.

Secrets use the ``b64`` provider's format (ciphertext = base64 of the value).
``$FAKE_PULUMI_FAIL=<command>`` makes that command fail as the CLI does (exit
255, ``error: ...`` on stderr). ``$FAKE_PULUMI_VIOLATE="<urn> <property>"`` makes ``up --plan``
refuse a correct plan as the CLI does for pulumi/pulumi#11587 (``resource <urn> violates plan:
properties changed: ~~code[...]``, exit 255, nothing applied); ``$FAKE_PULUMI_EXTRA_STEP="<urn>
<property>"`` adds a step to every preview (the world moved since the plan).
``$FAKE_PULUMI_REPLACE="<urn> <property>"`` adds a replacement to the preview's event log.
``$FAKE_PULUMI_DRIFT="<urn> <property> <json value>"`` makes every preview compute that value for that
input (a data source the program reads answers otherwise now: same property, another value).
``preview --json`` prints the steps and the change summary. Every invocation is appended to
``$FAKE_PULUMI_LOG`` (one JSON line: argv, cwd, and the virtualenv the CLI would run the program with:
``runtime.options.virtualenv`` of the ``Pulumi.yaml`` in cwd, resolved through links, or null when it
does not exist) so tests can assert on the exact commands run.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

VERSION = "v3.205.0"


def fail(message: str, code: int = 255) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def flags(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Positional arguments and ``--flag value`` / ``--flag=value`` / ``--flag`` options."""
    boolean = {"--json", "--show-secrets", "--yes", "--skip-preview", "--diff", "--non-interactive", "--path",
               "--plaintext-only"}
    positional: list[str] = []
    options: dict[str, list[str]] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            positional += args[index + 1:]
            break
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg.split("=", 1)
                options.setdefault(name, []).append(value)
            elif arg in boolean:
                options.setdefault(arg, []).append("true")
            else:
                options.setdefault(arg, []).append(args[index + 1] if index + 1 < len(args) else "")
                index += 1
        else:
            positional.append(arg)
        index += 1
    return positional, options


class Backend:
    def __init__(self, url: str, project: str, stack: str) -> None:
        if not url.startswith("file://"):
            fail(f"this double only serves file:// backends, not {url}")
        self.root = Path(url[len("file://"):])
        meta = self.root / ".pulumi" / "meta.yaml"
        self.project_layout = meta.exists() and "version: 1" in meta.read_text()
        self.project = project
        self.stack = stack

    def _dir(self, kind: str) -> Path:
        base = self.root / ".pulumi" / kind
        return base / self.project / self.stack if self.project_layout else base / self.stack

    @staticmethod
    def read(path: Path) -> Any:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        elif path.name.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return json.loads(data)

    def stack_file(self) -> Path | None:
        base = self.root / ".pulumi" / "stacks"
        base = base / self.project if self.project_layout else base
        for ext in ("", ".gz", ".zst"):
            candidate = base / f"{self.stack}.json{ext}"
            if candidate.exists():
                return candidate
        return None

    def history(self) -> list[tuple[int, Path]]:
        directory = self._dir("history")
        found = []
        for path in directory.glob(f"{self.stack}-*.history.json*") if directory.is_dir() else []:
            nanos = int(path.name[len(self.stack) + 1:].split(".", 1)[0])
            found.append((nanos, path))
        return sorted(found)

    def stacks(self) -> list[str]:
        """``pulumi stack ls``: this project's stacks (short names, as the CLI lists them)."""
        base = self.root / ".pulumi" / "stacks"
        base = base / self.project if self.project_layout else base
        names = {path.name.split(".json", 1)[0] for path in base.glob("*.json*")} if base.is_dir() else set()
        return sorted(names)

    def locks(self) -> list[Path]:
        base = self.root / ".pulumi" / "locks"
        directory = base / "organization" / self.project / self.stack if self.project_layout else base / self.stack
        return sorted(directory.glob("*.json")) if directory.is_dir() else []

    def deployment(self) -> dict[str, Any]:
        path = self.stack_file()
        if path is None:
            fail(f"no stack named '{self.stack}' found")
        assert path is not None
        document = self.read(path)
        body = document.get("checkpoint", document)
        return dict(body.get("latest") or {})


def project_info(cwd: Path) -> tuple[str, Path]:
    """(project name, stack config dir) from Pulumi.yaml."""
    from ruamel.yaml import YAML

    document = YAML(typ="safe").load((cwd / "Pulumi.yaml").read_text()) or {}
    return str(document["name"]), cwd / str(document.get("stackConfigDir") or ".")


def decrypt(ciphertext: str) -> str:
    return base64.b64decode(ciphertext).decode()


def encrypt(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def format_time(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


def config_json(raw: dict[str, Any], show_secrets: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and "secure" in value:
            entry: dict[str, Any] = {"secret": True}
            if show_secrets:
                entry["value"] = decrypt(value["secure"])
            out[key] = entry
        elif isinstance(value, (list, dict)):
            out[key] = {"value": json.dumps(value), "objectValue": value, "secret": False}
        else:
            out[key] = {"value": value if isinstance(value, str) else json.dumps(value), "secret": False}
    return out


def load_stack_yaml(path: Path) -> tuple[Any, Any]:
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(path.read_text()) if path.exists() else None
    return yaml, document


def stack_config(path: Path) -> dict[str, Any]:
    _, document = load_stack_yaml(path)
    raw = (document or {}).get("config") or {}
    return json.loads(json.dumps(raw))


def save_stack_yaml(path: Path, yaml: Any, document: Any) -> None:
    import io

    buffer = io.StringIO()
    yaml.dump(document, buffer)
    path.write_text(buffer.getvalue())


def virtualenv(cwd: Path) -> str | None:
    """Where the program would run: the Pulumi.yaml's virtualenv, resolved (None: none there)."""
    from ruamel.yaml import YAML

    project = cwd / "Pulumi.yaml"
    if not project.is_file():
        return None
    document = YAML(typ="safe").load(project.read_text()) or {}
    options = (document.get("runtime") or {}).get("options") if isinstance(document.get("runtime"), dict) else None
    name = (options or {}).get("virtualenv") if isinstance(options, dict) else None
    path = cwd / str(name) if name else None
    return str(path.resolve()) if path is not None and (path / "bin" / "python").exists() else None


def main(argv: list[str]) -> None:
    cwd = Path.cwd()
    log = os.environ.get("FAKE_PULUMI_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": argv, "cwd": str(cwd), "virtualenv": virtualenv(cwd)}) + "\n")
    args = [a for a in argv if a != "--non-interactive"]
    failing = os.environ.get("FAKE_PULUMI_FAIL")  # e.g. "preview": that command fails as the CLI would
    if failing and failing in args:
        fail(f"{failing} failed: aws:cloudfront/distribution:Distribution (cdn): AccessDenied: not authorized")
    if args[:1] == ["version"]:
        print(VERSION)
        return
    positional, options = flags(args)
    given = (options.get("--stack") or [""])[-1].split("/")
    stack = given[-1]
    given_project = given[-2] if len(given) >= 2 else None
    project, config_dir = project_info(cwd)
    backend = Backend(os.environ.get("PULUMI_BACKEND_URL", ""), project, stack)
    # --config-file (a program run from another checkout) names the stack config file to use.
    config_path = Path(options["--config-file"][-1]) if options.get("--config-file") else \
        config_dir / f"Pulumi.{stack}.yaml"
    show_secrets = "--show-secrets" in options
    command = positional[:2]

    if command == ["stack", "select"] or command == ["stack"]:
        if backend.stack_file() is None:
            fail(f"no stack named '{stack}' found")
        if given_project and given_project != project:
            fail(f"provided project name \"{given_project}\" doesn't match Pulumi.yaml")
        return
    if command == ["stack", "ls"]:
        print(json.dumps([{"name": name, "current": False} for name in backend.stacks()], indent=4))
        return
    if command == ["stack", "history"]:
        entries = []
        history = backend.history()
        # Pulumi Cloud numbers updates; DIY backends report 0 ($FAKE_PULUMI_VERSIONS=cloud to number them).
        cloud = os.environ.get("FAKE_PULUMI_VERSIONS") == "cloud"
        for number, (_, path) in reversed(list(enumerate(history, start=1))):
            info = backend.read(path)
            entry: dict[str, Any] = {
                "version": number if cloud else int(info.get("version") or 0),
                "kind": info["kind"],
                "startTime": format_time(int(info["startTime"])),
                "message": info.get("message", ""),
                "environment": info.get("environment") or {},
                "config": config_json(info.get("config") or {}, show_secrets),
                "result": info.get("result", ""),
            }
            if info.get("result") != "in-progress":
                entry["endTime"] = format_time(int(info.get("endTime") or info["startTime"]))
                entry["resourceChanges"] = info.get("resourceChanges") or {}
            entries.append(entry)
        size = int((options.get("--page-size") or ["10"])[-1])
        page = int((options.get("--page") or ["1"])[-1])
        print(json.dumps(entries[(page - 1) * size: page * size], indent=4))
        return
    if command == ["stack", "export"]:
        print(json.dumps({"version": 3, "deployment": backend.deployment()}, indent=4))
        return
    if command == ["stack", "output"]:
        outputs: dict[str, Any] = {}
        for resource in backend.deployment().get("resources") or []:
            if resource.get("type") == "pulumi:pulumi:Stack":
                outputs = resource.get("outputs") or {}
        print(json.dumps(outputs, indent=4))
        return
    if positional[:1] == ["config"] and len(positional) == 1:
        print(json.dumps(config_json(stack_config(config_path), show_secrets), indent=4))
        return
    if command == ["config", "set-all"]:
        yaml, document = load_stack_yaml(config_path)
        if document is None:
            from ruamel.yaml.comments import CommentedMap

            document = CommentedMap()
        config = document.setdefault("config", {})
        pairs = [(False, p) for p in options.get("--plaintext", [])] + [(True, p) for p in options.get("--secret", [])]
        for secret, pair in pairs:
            key, value = pair.split("=", 1)
            config[key] = {"secure": encrypt(value)} if secret else value
        save_stack_yaml(config_path, yaml, document)
        return
    if command == ["config", "rm-all"]:
        yaml, document = load_stack_yaml(config_path)
        for key in positional[2:]:
            (document.get("config") or {}).pop(key, None)
        save_stack_yaml(config_path, yaml, document)
        return
    if command[:1] == ["preview"]:
        preview(backend, config_path, options)
        return
    if command[:1] == ["up"]:
        up(backend, config_path, options)
        return
    fail(f"the recorded-CLI double does not know: pulumi {' '.join(argv)}", 2)


# Which of the stack's resources each config key feeds (what a real preview would find), and the
# top-level property it changes there.
CDN = "urn:pulumi:staging::rollback::aws:cloudfront/distribution:Distribution::cdn"
DB = "urn:pulumi:staging::rollback::aws:rds/instance:Instance::db"
AFFECTS = {
    "rollback:edgeFunctionVersion": CDN,
    "rollback:assetsRelease": CDN,
    "rollback:originVerifySecret": CDN,
}
PROPERTY = {
    "rollback:edgeFunctionVersion": "defaultCacheBehavior",
    "rollback:assetsRelease": "origins",
    "rollback:originVerifySecret": "origins",
}
# A restore of the database is a new instance under a new identifier: a replacement.
REPLACES = ("rollback:dbRestoreFromSnapshot", "rollback:dbRestoreToTime", "rollback:dbRestoreGeneration")
SIG = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


def planned_changes(changed: list[str]) -> dict[str, list[str]]:
    """URN -> the top-level properties the changed config keys change."""
    found: dict[str, set[str]] = {}
    for key in changed:
        if key in AFFECTS:
            found.setdefault(AFFECTS[key], set()).add(PROPERTY[key])
        if key in REPLACES:
            found.setdefault(DB, set()).add("identifier")
    extra = os.environ.get("FAKE_PULUMI_EXTRA_STEP")  # "<urn> <property>": the world moved since the plan
    if extra:
        urn, prop = extra.split(" ", 1)
        found.setdefault(urn, set()).add(prop)
    return {urn: sorted(props) for urn, props in sorted(found.items())}


def _plain(value: Any) -> Any:
    return decrypt(value["secure"]) if isinstance(value, dict) and "secure" in value else value


def program_inputs(resource: dict[str, Any], config: dict[str, Any], *, show: str) -> dict[str, Any]:
    """The inputs the double's "program" declares for ``resource`` with ``config`` (``show``: how a secret's
    ciphertext is written: "encrypt" as a plan stores it, "mask" as ``preview --json`` prints it)."""
    import copy

    inputs = copy.deepcopy(resource.get("inputs") or {})
    if resource.get("urn") == CDN:
        release = _plain(config.get("rollback:assetsRelease"))
        version = _plain(config.get("rollback:edgeFunctionVersion"))
        secret = _plain(config.get("rollback:originVerifySecret"))
        origins = inputs.get("origins") or []
        if release and origins:
            origins[0]["originPath"] = f"/releases/{release}"
        associations = (inputs.get("defaultCacheBehavior") or {}).get("lambdaFunctionAssociations") or []
        if version and associations:
            associations[0]["lambdaArn"] = associations[0]["lambdaArn"].rsplit(":", 1)[0] + f":{version}"
        headers = origins[1].get("customHeaders") if len(origins) > 1 else None
        if secret is not None and headers:
            ciphertext = encrypt(json.dumps(secret)) if show == "encrypt" else "[secret]"
            headers[0]["value"] = {SIG: SECRET_SIG, "ciphertext": ciphertext}
    if resource.get("urn") == DB:
        restored = _plain(config.get("rollback:dbRestoreFromSnapshot"))
        if restored:
            inputs["identifier"] = f"{inputs.get('identifier')}-from-{str(restored).rsplit(':', 1)[-1]}"
    drift = os.environ.get("FAKE_PULUMI_DRIFT")  # "<urn> <property> <json value>"
    if drift:
        urn, prop, value = drift.split(" ", 2)
        if urn == resource.get("urn"):
            inputs[prop] = json.loads(value)
    return inputs


def _last_config(backend: Backend) -> dict[str, Any]:
    history = backend.history()
    return backend.read(history[-1][1]).get("config") or {} if history else {}


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    def token(value: Any) -> Any:
        return decrypt(value["secure"]) if isinstance(value, dict) and "secure" in value else value

    return sorted(k for k in set(old) | set(new) if token(old.get(k)) != token(new.get(k)))


def _locked(backend: Backend) -> None:
    locks = backend.locks()
    if locks:
        fail(f"the stack is currently locked by {len(locks)} lock(s). Either wait for the other process(es) "
             f"to end or delete the lock file with `pulumi cancel`.\n  {backend.root.as_uri()}/"
             f"{locks[0].relative_to(backend.root)}: created by ci@runner-7 (pid 4242)")


def _op(urn: str, props: list[str]) -> str:
    return "replace" if urn == DB and "identifier" in props else "update"


def preview(backend: Backend, config_path: Path, options: dict[str, list[str]]) -> None:
    _locked(backend)
    config = stack_config(config_path)
    changed = _changed(_last_config(backend), config)
    changes = planned_changes(changed)
    urns = sorted(changes)
    resources = backend.deployment().get("resources") or []
    by_urn = {str(r.get("urn")): r for r in resources}
    total = len(resources)
    summary = {"same": total - len(urns)}
    updated = [u for u in urns if _op(u, changes[u]) == "update"]
    if updated:
        summary["update"] = len(updated)
    if len(updated) != len(urns):
        summary["replace"] = len(urns) - len(updated)
    plan = options.get("--save-plan", [None])[-1]
    if plan:
        def goal(urn: str, props: list[str]) -> dict[str, Any]:
            new = program_inputs(by_urn.get(urn) or {"urn": urn}, config, show="encrypt")
            diff: dict[str, Any] = {"updates": {p: new[p] for p in props if p in new}}
            deletes = [p for p in props if p not in new]
            if deletes:
                diff["deletes"] = deletes
            return {"type": urn.split("::")[-2], "name": urn.split("::")[-1], "custom": True, "inputDiff": diff,
                    "protect": False}

        steps_of = {"update": ["update"], "replace": ["create-replacement", "replace", "delete-replaced"]}
        Path(plan).write_text(json.dumps({
            "manifest": {"time": format_time(int(time.time())), "magic": "", "version": VERSION},
            "resourcePlans": {urn: {"steps": steps_of[_op(urn, props)], "goal": goal(urn, props), "state": None}
                              for urn, props in changes.items()},
            "config": config,
        }, indent=4))
    log = options.get("--event-log", [None])[-1]
    if log:
        now = int(time.time())
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"sequence": 0, "timestamp": now,
                                     "preludeEvent": {"config": {k: "[secret]" if isinstance(v, dict) else str(v)
                                                                 for k, v in config.items()}}}) + "\n")
            handle.write(json.dumps({"sequence": 1, "timestamp": now,
                                     "summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                                                      "resourceChanges": summary, "PolicyPacks": {}}}) + "\n")
            replaced = os.environ.get("FAKE_PULUMI_REPLACE")  # "<urn> <property>": a replacement in the preview
            sequence = 2
            for urn, props in changes.items():
                keys = {"keys": props} if _op(urn, props) == "replace" else {}
                handle.write(json.dumps({"sequence": sequence, "timestamp": now, "resourcePreEvent": {"metadata": {
                    "op": _op(urn, props), "urn": urn, "type": urn.split("::")[-2], "provider": "", "diffs": props,
                    **keys}}}) + "\n")
                sequence += 1
            if replaced:
                urn, prop = replaced.split(" ", 1)
                handle.write(json.dumps({"sequence": sequence, "timestamp": now, "resourcePreEvent": {"metadata": {
                    "op": "replace", "urn": urn, "type": urn.split("::")[-2], "provider": "", "keys": [prop],
                    "diffs": [prop]}}}) + "\n")
                sequence += 1
            # The CLI always ends the event log with a cancel event; the SDK stops reading there.
            handle.write(json.dumps({"sequence": sequence, "timestamp": now, "cancelEvent": {}}) + "\n")
    if "--json" in options:
        # `pulumi preview --json`: the steps (same ones too) and the summary, nothing else on stdout.
        def state(urn: str, inputs: dict[str, Any]) -> dict[str, Any]:
            return {"urn": urn, "custom": True, "type": urn.split("::")[-2], "inputs": inputs}

        # A replacement is three steps, as the engine takes it: create-replacement, replace, delete-replaced.
        steps = [{"op": op, "urn": urn, "diffReasons": props,
                  "detailedDiff": {p: {"kind": "update", "inputDiff": True} for p in props},
                  "oldState": state(urn, program_inputs(by_urn.get(urn) or {"urn": urn}, _last_config(backend),
                                                        show="mask")),
                  "newState": state(urn, program_inputs(by_urn.get(urn) or {"urn": urn}, config, show="mask"))}
                 for urn, props in changes.items()
                 for op in (["create-replacement", "replace", "delete-replaced"] if _op(urn, props) == "replace"
                            else ["update"])]
        steps += [{"op": "same", "urn": r["urn"]} for r in resources if r.get("urn") not in changes]
        print(json.dumps({"config": {k: "[secret]" if isinstance(v, dict) else v for k, v in config.items()},
                          "steps": steps, "changeSummary": summary}, indent=4))
        return
    print(f"Previewing update ({backend.stack}):")
    for urn in urns:
        print(f"    ~ {urn.split('::')[-2]} {urn.split('::')[-1]} update [diff: {', '.join(changed)}]")
    print("Resources:")
    if urns:
        print(f"    ~ {len(urns)} to update")
    print(f"    {summary['same']} unchanged")


def up(backend: Backend, config_path: Path, options: dict[str, list[str]]) -> None:
    _locked(backend)
    config = stack_config(config_path)
    plan_path = options.get("--plan", [None])[-1]
    if plan_path:
        if not Path(plan_path).exists():
            fail(f"could not read plan file {plan_path}: no such file")
        plan = json.loads(Path(plan_path).read_text())
        if _changed(plan.get("config") or {}, config):
            fail("the update plan was saved for a different configuration: run the preview again")
        violated = os.environ.get("FAKE_PULUMI_VIOLATE")  # "<urn> <property>": pulumi/pulumi#11587
        if violated:
            urn, prop = violated.split(" ", 1)
            name = urn.rsplit("::", 1)[-1]
            # As the CLI prints it: the Archive's hash differs between the plan and the update.
            print(f"Updating ({backend.stack}):")
            print(f" aws:lambda:Function ({name}):")
            print(f"    error: resource {urn} violates plan: properties changed: "
                  f"~~{prop}[{{&{{ d12b4d63b3797584e6d74bb09da2ee1219698efd677800678744960201a2a528 "
                  f"map[handler.py:0xc0033c9d10]  }}}}!="
                  f"{{&{{ 23333f4988302b4e113a8ad9587d76c65fe21061bbb4f5a090d7249535bd32c9 "
                  f"map[handler.py:0xc003c9b810]  }}}}]")
            fail("update failed")
    # The checkpoint this config produces: that of the newest update that ran with the same config.
    history = backend.history()
    source = None
    for _, path in reversed(history):
        if not _changed(backend.read(path).get("config") or {}, config):
            source = path
            break
    for _, path in reversed(history) if source is None else ():
        # Today's database restore keys with an older version's other keys: the instance stays as it is.
        if not [k for k in _changed(backend.read(path).get("config") or {}, config) if k not in REPLACES]:
            source = path
            break
    if source is None:
        fail("the recorded-CLI double has no checkpoint for this config")
    assert source is not None
    stem = source.name.split(".history.json")[0]
    checkpoint_path = next(source.parent.glob(f"{stem}.checkpoint.json*"))
    checkpoint = backend.read(checkpoint_path)
    changed = _changed(_last_config(backend), config)
    urns = sorted({AFFECTS[k] for k in changed if k in AFFECTS})
    targets = options.get("--target") or []
    if targets:  # --target: an exclusive list of the resources to update
        urns = [urn for urn in urns if urn in targets]
    now = int(time.time())
    nanos = time.time_ns()
    message = (options.get("--message") or [""])[-1]
    total = len((checkpoint.get("checkpoint", checkpoint).get("latest") or {}).get("resources") or [])
    changes = {"same": total - len(urns), **({"update": len(urns)} if urns else {})}
    info = {"kind": "update", "startTime": now, "message": message,
            "environment": {"exec.kind": "auto.local"}, "config": config, "result": "succeeded",
            "endTime": now, "version": 0, "resourceChanges": changes}
    directory = history[-1][1].parent
    (directory / f"{backend.stack}-{nanos}.history.json").write_text(json.dumps(info, indent=4))
    (directory / f"{backend.stack}-{nanos}.checkpoint.json").write_text(json.dumps(checkpoint, indent=4))
    stack_file = backend.stack_file()
    assert stack_file is not None
    for old in stack_file.parent.glob(f"{backend.stack}.json*"):
        old.unlink()
    (stack_file.parent / f"{backend.stack}.json").write_text(json.dumps(checkpoint, indent=4))
    print(f"Updating ({backend.stack}):")
    print("Resources:")
    if urns:
        print(f"    ~ {len(urns)} updated")
    print(f"    {changes['same']} unchanged")


if __name__ == "__main__":
    main(sys.argv[1:])
