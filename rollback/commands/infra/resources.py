"""What the break-glass commands act on: the distribution, the edge function and the assets
bucket (option, else ``[env.<name>.aws]`` in rollback.toml, else, with ``aws.from_stack_outputs``,
the Pulumi stack's outputs), and where a rolled-back value is pinned in the stack config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollback.adapters.stack_config import qualify_key, stack_config_path
from rollback.adapters.stack_history import stack_ref
from rollback.config import Config
from rollback.context import Services
from rollback.errors import ConfigError, RollbackError

__all__ = ["EDGE_PIN_KEY", "Resources", "pin_command", "pin_target", "resolve_resources", "short_path"]

EDGE_PIN_KEY = "edgeFunctionVersion"

_RESOURCE_KEYS = {
    # name: (config attribute, stack output, option)
    "distribution": ("distribution_id", "distributionId", "--distribution"),
    "function": ("edge_function", "edgeFunctionName", "--function"),
    "bucket": ("assets_bucket", "assetsBucket", "--bucket"),
}



@dataclass(frozen=True)
class Resources:
    distribution: str | None = None
    function: str | None = None
    bucket: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # name -> option | config | stack outputs

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "function": self.function, "bucket": self.bucket,
                "sources": dict(self.sources)}


def resolve_resources(config: Config, *, need: Sequence[str], distribution: str | None = None,
                      function: str | None = None, bucket: str | None = None,
                      services: Services) -> Resources:
    """The resources a command needs: option, else rollback.toml, else the stack's outputs
    (read through ``services``, only when a needed one is not set)."""
    given = {"distribution": distribution, "function": function, "bucket": bucket}
    values: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    outputs: Mapping[str, Any] | None = None
    outputs_error: str | None = None
    outputs_read = False
    for name in ("distribution", "function", "bucket"):
        attribute, output, option = _RESOURCE_KEYS[name]
        value = given[name] or getattr(config.env.aws, attribute)
        source = "option" if given[name] else "config"
        if not value and name in need and config.env.aws.from_stack_outputs:
            if not outputs_read:
                outputs_read = True
                try:
                    outputs = services.stack_outputs()
                except RollbackError as exc:
                    outputs_error = exc.message
            if outputs and outputs.get(output):
                value, source = str(outputs[output]), "stack outputs"
        if not value and name in need:
            key = f"env.{config.env_name}.aws.{attribute}"
            why = f" (reading the stack outputs failed: {outputs_error})" if outputs_error else ""
            raise ConfigError(f"no {name} to act on: {key} is not set{why}",
                              f"set {attribute} under [env.{config.env_name}.aws] in rollback.toml, or pass {option}",
                              key=key)
        values[name] = value or None
        if value:
            sources[name] = source
    return Resources(values["distribution"], values["function"], values["bucket"], sources)

def pin_target(config: Config) -> tuple[Path, str, str]:
    """``(stack config file, qualified pin key, stack name)``."""
    pulumi = config.env.pulumi
    if pulumi is None:
        raise ConfigError(
            f"environment {config.env_name!r} has no [env.{config.env_name}.pulumi] section, so the edge pin "
            "cannot be written to the stack config",
            f"add [env.{config.env_name}.pulumi] with stack = \"...\", or pass --no-pin and pin the version by hand",
            key=f"env.{config.env_name}.pulumi")
    ref = stack_ref(config)
    path = stack_config_path(config.resolve_path(pulumi.project_dir), ref.name)
    if not path.exists():
        # Creating it would hide a wrong project_dir / stackConfigDir: the pin would land where Pulumi never looks.
        raise ConfigError(f"stack config file {path} does not exist, so the edge pin cannot be written",
                          "check pulumi.project_dir and pulumi.stack in rollback.toml (and stackConfigDir in "
                          "Pulumi.yaml), or pass --no-pin and pin the version by hand",
                          key=f"env.{config.env_name}.pulumi.project_dir")
    return path, qualify_key(EDGE_PIN_KEY, ref.project), pulumi.stack


def short_path(config: Config, path: Path) -> str:
    """``path`` relative to the config's directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(config.root.resolve()))
    except ValueError:
        return str(path)


def pin_command(key: str, version: str, stack: str) -> str:
    """The ``pulumi config set`` command that pins ``key`` by hand."""
    return f"pulumi config set {key} {version} --stack {stack}"

