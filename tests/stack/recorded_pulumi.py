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
  (history + checkpoint, the checkpoint of the update whose config it restores).

Secrets use the ``b64`` provider's format (ciphertext = base64 of the value).
``$FAKE_PULUMI_FAIL=<command>`` makes that command fail as the CLI does (exit
255, ``error: ...`` on stderr). ``$FAKE_PULUMI_VIOLATE="<urn> <property>"`` makes ``up --plan``
refuse a correct plan as the CLI does for pulumi/pulumi#11587 (``resource <urn> violates plan:
properties changed: ~~code[...]``, exit 255, nothing applied); ``$FAKE_PULUMI_EXTRA_STEP="<urn>
<property>"`` adds a step to every preview (the world moved since the plan).
``$FAKE_PULUMI_REPLACE="<urn> <property>"`` adds a replacement to the preview's event log.
``preview --json`` prints the steps and the change summary. Every invocation is appended to
``$FAKE_PULUMI_LOG`` (one JSON line: argv, cwd)
so tests can assert on the exact commands run.
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


def main(argv: list[str]) -> None:
    cwd = Path.cwd()
    log = os.environ.get("FAKE_PULUMI_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n")
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


def planned_changes(changed: list[str]) -> dict[str, list[str]]:
    """URN -> the top-level properties the changed config keys change."""
    found: dict[str, set[str]] = {}
    for key in changed:
        if key in AFFECTS:
            found.setdefault(AFFECTS[key], set()).add(PROPERTY[key])
    extra = os.environ.get("FAKE_PULUMI_EXTRA_STEP")  # "<urn> <property>": the world moved since the plan
    if extra:
        urn, prop = extra.split(" ", 1)
        found.setdefault(urn, set()).add(prop)
    return {urn: sorted(props) for urn, props in sorted(found.items())}


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


def preview(backend: Backend, config_path: Path, options: dict[str, list[str]]) -> None:
    _locked(backend)
    config = stack_config(config_path)
    changed = _changed(_last_config(backend), config)
    changes = planned_changes(changed)
    urns = sorted(changes)
    resources = backend.deployment().get("resources") or []
    total = len(resources)
    summary = {"same": total - len(urns)}
    if urns:
        summary["update"] = len(urns)
    plan = options.get("--save-plan", [None])[-1]
    if plan:
        Path(plan).write_text(json.dumps({
            "manifest": {"time": format_time(int(time.time())), "magic": "", "version": VERSION},
            "resourcePlans": {urn: {"steps": ["update"],
                                    "goal": {"inputDiff": {"updates": {p: {} for p in props}}}}
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
                handle.write(json.dumps({"sequence": sequence, "timestamp": now, "resourcePreEvent": {"metadata": {
                    "op": "update", "urn": urn, "type": urn.split("::")[-2], "provider": "", "diffs": props}}}) + "\n")
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
        steps = [{"op": "update", "urn": urn, "diffReasons": props,
                  "detailedDiff": {p: {"kind": "update", "inputDiff": True} for p in props}}
                 for urn, props in changes.items()]
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
    if source is None:
        fail("the recorded-CLI double has no checkpoint for this config")
    assert source is not None
    stem = source.name.split(".history.json")[0]
    checkpoint_path = next(source.parent.glob(f"{stem}.checkpoint.json*"))
    checkpoint = backend.read(checkpoint_path)
    changed = _changed(_last_config(backend), config)
    urns = sorted({AFFECTS[k] for k in changed if k in AFFECTS})
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
