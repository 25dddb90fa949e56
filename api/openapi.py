"""The OpenAPI document as exact as JSON Schema can make it.

The models state their own rules (`journeys.schema`); these hold across models and are
stated here, over the whole document, once FastAPI has built it:

- No string of a `StorableModel` holds NUL (`journeys.text`: PostgreSQL cannot store
  it). In the schema of each (marked `STORABLE_MARK`), every string without a pattern,
  format or set of values gets `STORABLE_TEXT_PATTERN`, every free-form object's keys
  too, and a free-form value (`Any`: a contact's fields, an event's data) is
  `StorableJson`: any JSON whose strings hold none.
- A mapping whose keys must match a pattern (`dict[FieldName, ...]`) takes no other key:
  JSON Schema's `patternProperties` alone would let any other key through.
- A campaign action's or a recurring send's `message` is a send_email step's fields
  (`MailMessage`).

The 422 of every operation lists the problem types a request that fits the document
can still get (`api.errors.BEYOND_SCHEMA`).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from api.errors import BEYOND_SCHEMA
from journeys.schema import STORABLE_TEXT_PATTERN
from journeys.text import STORABLE_MARK

STORABLE_JSON = "StorableJson"
COMPONENTS = "#/components/schemas/"
_TEXT = {"type": "string", "pattern": STORABLE_TEXT_PATTERN}
# Keywords that make a schema more than "any value" (annotations do not).
_CONSTRAINING = {
    "type",
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "not",
    "enum",
    "const",
    "properties",
    "items",
    "if",
    "format",
    "pattern",
}
# Keywords under which a subschema (or a list, or a mapping, of them) sits.
_SUBSCHEMA = ("items", "not", "if", "then", "else", "propertyNames", "contains")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties")
# Subschemas that say something of the value itself, or of keys: never values to store.
_NOT_VALUES = ("not", "if", "then", "else", "propertyNames")
_DESCRIPTION_422 = (
    "The request does not fit this document (each problem named in pydantic's shape), or "
    "it fits and breaks a rule JSON Schema cannot state, in a problem of one of these "
    "types: "
)


def storable_json_schema(ref: dict[str, str]) -> dict[str, Any]:
    """Any JSON value whose strings hold no NUL; `ref` refers to this schema itself."""
    return {
        "description": "any JSON value whose strings (object keys too) hold no NUL",
        "anyOf": [
            _TEXT,
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": ref},
            {"type": "object", "propertyNames": _TEXT, "additionalProperties": ref},
        ],
    }


def _is_any(schema: Any) -> bool:
    return schema is True or (isinstance(schema, dict) and not _CONSTRAINING & schema.keys())


def _subschemas(schema: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    """(container, key, subschema) of each schema directly inside `schema`."""
    found: list[tuple[Any, Any, Any]] = [
        (schema, key, schema[key]) for key in _SUBSCHEMA if key in schema
    ]
    for key in _SUBSCHEMA_LISTS:
        found += [(schema[key], i, value) for i, value in enumerate(schema.get(key) or [])]
    for key in _SUBSCHEMA_MAPS:
        found += [(schema[key], name, value) for name, value in (schema.get(key) or {}).items()]
    if "additionalProperties" in schema:
        found.append((schema, "additionalProperties", schema["additionalProperties"]))
    return found


def closed_patterns(schema: dict[str, Any]) -> None:
    """`patternProperties` without `additionalProperties` takes no other key (in place,
    nested schemas included)."""
    if "patternProperties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for _, _, value in _subschemas(schema):
        if isinstance(value, dict):
            closed_patterns(value)


def storable(schema: dict[str, Any], ref: dict[str, str]) -> None:
    """No NUL in any string `schema` admits (in place, nested schemas included; not
    through references). `ref` refers to `storable_json_schema`."""
    for container, key, value in _subschemas(schema):
        if _is_any(value) and not (container is schema and key in _NOT_VALUES):
            # Annotations (a title, a description) stay beside the reference.
            container[key] = {**(value if isinstance(value, dict) else {}), **ref}
        elif isinstance(value, dict):
            storable(value, ref)
    if schema.get("additionalProperties") not in (None, False) and "propertyNames" not in schema:
        schema["propertyNames"] = dict(_TEXT)
    if schema.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(schema):
        schema["pattern"] = STORABLE_TEXT_PATTERN


def exact_definitions(definitions: dict[str, Any], prefix: str) -> None:
    """The rules of the module's docstring in the named schemas `definitions` (the
    document's components, or a JSON Schema's `$defs`), whose references start with
    `prefix`; `StorableJson` joins them."""
    ref = {"$ref": f"{prefix}{STORABLE_JSON}"}
    for schema in definitions.values():
        closed_patterns(schema)
        if schema.pop(STORABLE_MARK, False):
            storable(schema, ref)
    definitions[STORABLE_JSON] = storable_json_schema(ref)


def _mail_message(components: dict[str, Any]) -> dict[str, Any]:
    """A campaign action's or a recurring send's `message` (`MAIL_MESSAGE_SCHEMA`): a
    send_email step's fields but its `type` and `next`, which the message journey sets."""
    step = components.get("SendEmail-Input") or components["SendEmail"]
    message: dict[str, Any] = copy.deepcopy(step)
    for name in ("type", "next"):
        message["properties"].pop(name, None)
    message["required"] = [r for r in message.get("required", []) if r not in ("type", "next")]
    message["title"] = "MailMessage"
    message["description"] = "the fields of a send_email step (its type and next are set)"
    return message


def _schemas_of(operation: dict[str, Any]) -> list[dict[str, Any]]:
    """The schemas written inline in an operation: its parameters', body's, answers'."""
    media = [*operation.get("requestBody", {}).get("content", {}).values()]
    for response in operation.get("responses", {}).values():
        media += response.get("content", {}).values()
    schemas = [p.get("schema") for p in operation.get("parameters", [])]
    schemas += [m.get("schema") for m in media]
    return [s for s in schemas if isinstance(s, dict)]


def exact(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (FastAPI's) with the rules of the module's docstring, in place."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    exact_definitions(components, COMPONENTS)
    components["MailMessage"] = _mail_message(components)
    problem_types = "; ".join(f"`{kind}`: {why}" for kind, why in BEYOND_SCHEMA.items())
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for schema in _schemas_of(operation):
                closed_patterns(schema)
                if schema.pop(STORABLE_MARK, False):  # a model's schema written inline
                    storable(schema, {"$ref": f"{COMPONENTS}{STORABLE_JSON}"})
            response = operation.get("responses", {}).get("422")
            if response is not None and problem_types not in response["description"]:
                # FastAPI's own description says no more than "Validation Error".
                said = response["description"]
                said = "" if said == "Validation Error" else f"{said.rstrip('.')}. "
                response["description"] = f"{said}{_DESCRIPTION_422}{problem_types}."
    return document


def exact_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema (`model_json_schema()`) with the same rules, in place."""
    definitions = schema.setdefault("$defs", {})
    root = schema.pop(STORABLE_MARK, False)
    exact_definitions(definitions, "#/$defs/")
    closed_patterns(schema)
    if root:
        storable(schema, {"$ref": f"#/$defs/{STORABLE_JSON}"})
    return schema


def install(app: FastAPI) -> None:
    """Serve the exact document at /openapi.json (and to anything asking `app.openapi()`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = exact(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
