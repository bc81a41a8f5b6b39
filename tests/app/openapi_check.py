"""Validate responses against Vercel's published spec (tests/app/fixtures/openapi-subset.json), leniently.

Vercel's published spec fails strict validators (duplicate enum values, an
empty ``oneOf``, overlapping ``oneOf`` branches where one is a superset of the
other). We load it as OpenAPI 3.0 (``nullable``) and normalise those quirks:
``oneOf`` becomes ``anyOf`` (a body may match several overlapping branches),
an empty ``oneOf`` is dropped, enum values are de-duplicated. Everything else
(required keys, types, enums, nested shapes) is checked as published.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

# A copy of the shared fixture lives in the repository, so a clean clone (CI) has it.
SPEC_PATH = Path(os.environ.get("VERCEL_OPENAPI_SUBSET") or Path(__file__).parent / "fixtures" / "openapi-subset.json")


def _normalise(node: Any) -> Any:
    if isinstance(node, dict):
        out = {key: _normalise(value) for key, value in node.items()}
        if "oneOf" in out:
            branches = out.pop("oneOf")
            if branches:
                out["anyOf"] = branches
        if out.get("nullable") and "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"enum": [None]}]
        if isinstance(out.get("enum"), list):
            seen: list[Any] = []
            for value in out["enum"]:
                if value not in seen:
                    seen.append(value)
            out["enum"] = seen
            if out.get("nullable") and None not in seen:
                out["enum"].append(None)
        return out
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    return node


@lru_cache(maxsize=1)
def spec() -> dict[str, Any]:
    return _normalise(json.loads(SPEC_PATH.read_text(encoding="utf-8")))  # type: ignore[no-any-return]


def operations() -> dict[str, tuple[str, str]]:
    """operationId -> (method, path template)."""
    out = {}
    for path, item in spec()["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "operationId" in operation:
                out[operation["operationId"]] = (method.upper(), path)
    return out


def operation_for(method: str, path: str) -> str | None:
    """The operationId whose path template matches a concrete request path, if any."""
    import re

    for operation_id, (op_method, template) in operations().items():
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if op_method == method.upper() and re.match(pattern, path):
            return operation_id
    return None


def is_documented(operation_id: str, status: int) -> bool:
    method, path = operations()[operation_id]
    return str(status) in spec()["paths"][path][method.lower()]["responses"]


def response_schema(operation_id: str, status: int) -> dict[str, Any] | None:
    method, path = operations()[operation_id]
    responses = spec()["paths"][path][method.lower()]["responses"]
    response = responses.get(str(status))
    if response is None:
        raise AssertionError(f"{operation_id}: status {status} is not a documented response "
                             f"({', '.join(responses)})")
    content = response.get("content", {}).get("application/json")
    return None if content is None else content.get("schema")


def validate(operation_id: str, status: int, body: Any) -> None:
    """Raise AssertionError with the first schema error, if any."""
    from openapi_schema_validator import OAS30Validator

    schema = response_schema(operation_id, status)
    if schema is None:
        return
    document = {**copy.deepcopy(schema), "components": spec()["components"]}
    validator = OAS30Validator(document)
    errors = sorted(validator.iter_errors(body), key=lambda e: len(list(e.absolute_path)))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        raise AssertionError(f"{operation_id} {status}: {where}: {first.message[:300]}")
