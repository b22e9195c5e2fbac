"""Build an OpenAPI 3.1 document from a list of operations whose parameters, bodies and answers are the
services' own pydantic models (OpenAPI 3.1 schemas are JSON Schema 2020-12, which pydantic emits)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from kubernaut.problems import PROBLEM_JSON, TYPE_PATTERN

REF = "#/components/schemas/{model}"

# What each refusal means, whichever service answers it.
PROBLEM_MEANINGS: Mapping[int, str] = {
    400: "Invalid input; `field` (and `errors`) name what was wrong. Nothing was changed.",
    401: "Missing or unknown bearer token.",
    404: "No such resource.",
    409: "Conflicts with the current state (e.g. a different outcome is already recorded).",
    413: "The body is larger than the limit.",
    415: "The body is not `application/json`.",
    429: "Rate limit of this source exceeded; retry after `Retry-After` seconds.",
    431: "Request headers too large.",
    503: "A backing store is unavailable; nothing was accepted. Retry after `Retry-After` seconds.",
}
RETRY_AFTER = {429, 503}


class FieldError(BaseModel):
    """One invalid field of a refused request, with its message."""

    field: str
    message: str
    reason: str | None = None


class Problem(BaseModel):
    """RFC 7807 problem details, the body of every refusal."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(pattern=TYPE_PATTERN, description="`urn:kubernaut:problem:<kind>`")
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    errors: list[FieldError] | None = None


@dataclass(frozen=True)
class Operation:
    """One method on one path. ``answers`` maps each success status to its body model (None: no body)."""

    method: str
    path: str
    summary: str
    answers: Mapping[int, type[BaseModel] | None]
    problems: Sequence[int] = ()
    query: type[BaseModel] | None = None
    path_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    body: type[BaseModel] | None = None
    secured: bool = False
    tag: str = "api"
    description: str = ""
    media_type: str = "application/json"


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: drop the ``null`` branch of an optional field."""
    options = schema.get("anyOf")
    if options is None:
        return schema
    rest = [o for o in options if o != {"type": "null"}]
    if len(rest) == len(options):
        return schema
    out = {k: v for k, v in schema.items() if k != "anyOf"}
    if len(rest) == 1:
        out.update(rest[0])
    else:
        out["anyOf"] = rest
    if out.get("default") is None:
        out.pop("default", None)
    return out


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(dict(prop))
        description = prop.pop("description", None)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params


Refs = Mapping[tuple[Any, JsonSchemaMode], Any]


def _content(media_type: str, model: type[BaseModel] | None, ref: Any = None) -> dict[str, Any]:
    if model is None:  # text (a page, metrics), or a JSON document without a model (this one)
        return {media_type: {"schema": {"type": "object" if media_type.endswith("json") else "string"}}}
    return {media_type: {"schema": dict(ref)}}


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    name = op.path.strip("/").replace("/", "_").replace("{", "").replace("}", "").replace("-", "_")
    out: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{name}",
        "summary": op.summary,
        "tags": [op.tag],
    }
    if op.description:
        out["description"] = op.description
    params = [
        {"name": name, "in": "path", "required": True, "schema": dict(schema)}
        for name, schema in op.path_params.items()
    ]
    if op.query is not None:
        params += _query_parameters(op.query)
    if params:
        out["parameters"] = params
    if op.body is not None:
        body = _content("application/json", op.body, refs[(op.body, "validation")])
        out["requestBody"] = {"required": True, "content": body}
    responses: dict[str, Any] = {}
    for status, model in op.answers.items():
        if status in (204, 303):
            responses[str(status)] = {"description": "No body" if status == 204 else "See Other (Location)"}
            continue
        ref = refs[(model, "serialization")] if model is not None else None
        responses[str(status)] = {"description": "OK", "content": _content(op.media_type, model, ref)}
    for status in op.problems:
        answer: dict[str, Any] = {
            "description": PROBLEM_MEANINGS[status],
            "content": _content(PROBLEM_JSON, Problem, refs[(Problem, "serialization")]),
        }
        if status in RETRY_AFTER:
            answer["headers"] = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds."}}
        responses[str(status)] = answer
    out["responses"] = responses
    if op.secured:
        out["security"] = [{"bearer": []}]
    return out


def build_spec(title: str, version: str, description: str, operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``, every model under ``components/schemas``."""
    # Bodies are described as they are validated, answers as they are serialised.
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = {(Problem, "serialization")}
    for op in operations:
        wanted.update((m, "serialization") for m in op.answers.values() if m is not None)
        if op.body is not None:
            wanted.add((op.body, "validation"))
    refs, defs = models_json_schema(
        sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1])), ref_template=REF
    )
    operations = [
        *operations,
        Operation("GET", "/openapi.json", "This document", {200: None}, tag="docs"),
        Operation("GET", "/docs", "This document as a page", {200: None}, tag="docs", media_type="text/html"),
    ]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
