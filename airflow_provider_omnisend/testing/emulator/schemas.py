"""Request validation against Omnisend's official OpenAPI schemas (``testing/openapi/*.json``).

Each request schema is taken from the spec file, its ``$ref``s resolved inside that file, and compiled
twice at import time:

* a ``jsonschema`` validator (Draft 2020-12), which is the authority and produces the field errors;
* a small closure-compiled checker for the keywords these schemas use, which answers "valid?" about
  twenty times faster. A body it accepts is valid; a body it rejects is re-checked by ``jsonschema``,
  whose errors are returned (so a checker bug can only cost speed, never correctness the other way:
  ``tests/unit/test_emulator_schemas.py`` fuzzes both against each other). A schema that uses a keyword
  the checker does not know is left to ``jsonschema`` alone.

On top of the schemas, checks that the specs state only in prose (Omnisend rejects these): an e-mail
identifier must look like an e-mail address, a phone identifier must be E.164, ``birthdate`` must be a
real ``YYYY-MM-DD`` date, and RFC 3339 timestamps must parse.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

OPENAPI_DIR = Path(__file__).resolve().parent.parent / "openapi"
SPEC_FILES = {"contacts": "contacts-2026-03-15.json", "batches": "batches-2026-03-15.json"}

FieldError = dict[str, str]

# Annotations that never change whether an instance is valid (for jsonschema, "format" only annotates).
_ANNOTATIONS = frozenset(
    {
        "description",
        "example",
        "examples",
        "default",
        "readOnly",
        "writeOnly",
        "nullable",
        "title",
        "format",
        "deprecated",
    }
)

EMAIL_RE = re.compile(
    r"^[^@\s\"(),:;<>\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,63}$"
)
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RFC3339_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


def looks_like_email(value: str) -> bool:
    return len(value) <= 254 and EMAIL_RE.match(value) is not None


def is_e164(value: str) -> bool:
    return E164_RE.match(value) is not None


def parse_rfc3339(value: str) -> dt.datetime | None:
    """Parse an RFC 3339 date-time (offset required); None if it is not one."""
    if not isinstance(value, str) or RFC3339_RE.match(value) is None:
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_date(value: str) -> bool:
    if DATE_RE.match(value) is None:
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Spec loading and $ref resolution


@cache
def load_spec(name: str) -> dict[str, Any]:
    return json.loads((OPENAPI_DIR / SPEC_FILES[name]).read_text())


def _resolve(node: Any, spec: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline every local ``$ref`` (the request schemas are not recursive)."""
    if isinstance(node, list):
        return [_resolve(x, spec, seen) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise ValueError(f"unsupported $ref {ref!r}")
        target: Any = spec
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        resolved = _resolve(target, spec, (*seen, ref))
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        if siblings:  # 2020-12: $ref applies alongside its siblings
            return {"allOf": [resolved], **_resolve(siblings, spec, seen)}
        return resolved
    return {
        k: (_resolve(v, spec, seen) if k not in ("example", "examples", "default") else v)
        for k, v in node.items()
    }


def request_schema(spec_name: str, schema_name: str) -> dict[str, Any]:
    spec = load_spec(spec_name)
    return _resolve(spec["components"]["schemas"][schema_name], spec)


# --------------------------------------------------------------------------------------------------
# Fast checker

Check = Callable[[Any], bool]


class UnsupportedSchema(Exception):
    """The schema uses a keyword the fast checker does not implement."""


def _type_check(name: str) -> Check:
    if name == "string":
        return lambda v: isinstance(v, str)
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "boolean":
        return lambda v: isinstance(v, bool)
    if name == "integer":
        return lambda v: (
            (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
        )
    if name == "number":
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if name == "null":
        return lambda v: v is None
    raise UnsupportedSchema(f"type {name!r}")


def compile_checker(schema: Any) -> Check:
    """Compile a (resolved) schema into a boolean predicate; raise UnsupportedSchema if it cannot."""
    if schema is True or schema == {}:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if not isinstance(schema, dict):
        raise UnsupportedSchema(repr(schema))
    unknown = (
        set(schema)
        - _ANNOTATIONS
        - {
            "type",
            "properties",
            "required",
            "items",
            "minItems",
            "maxItems",
            "enum",
            "additionalProperties",
            "allOf",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
        }
    )
    if unknown:
        raise UnsupportedSchema(", ".join(sorted(unknown)))
    checks: list[Check] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        tchecks = [_type_check(t) for t in types]
        checks.append(tchecks[0] if len(tchecks) == 1 else (lambda v, cs=tchecks: any(c(v) for c in cs)))
    if "enum" in schema:
        values = schema["enum"]
        if all(isinstance(e, str) for e in values):
            allowed = frozenset(values)
            checks.append(lambda v: isinstance(v, str) and v in allowed)
        else:
            raise UnsupportedSchema("non-string enum")
    if "minLength" in schema or "maxLength" in schema:
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        checks.append(lambda v: not isinstance(v, str) or (len(v) >= lo and (hi is None or len(v) <= hi)))
    if "minimum" in schema or "maximum" in schema:
        mn, mx = schema.get("minimum"), schema.get("maximum")

        def _num(v: Any) -> bool:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return True
            return (mn is None or v >= mn) and (mx is None or v <= mx)

        checks.append(_num)
    if "minItems" in schema or "maxItems" in schema or "items" in schema:
        lo, hi = schema.get("minItems", 0), schema.get("maxItems")
        item_check = compile_checker(schema["items"]) if "items" in schema else None
        if item_check is not None and schema["items"] in ({}, True):
            item_check = None

        def _arr(v: Any) -> bool:
            if not isinstance(v, list):
                return True
            if len(v) < lo or (hi is not None and len(v) > hi):
                return False
            return item_check is None or all(item_check(x) for x in v)

        checks.append(_arr)
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        props = {k: compile_checker(s) for k, s in schema.get("properties", {}).items()}
        required = tuple(schema.get("required", ()))
        addl = schema.get("additionalProperties", True)
        addl_check = None if addl in (True, {}) else compile_checker(addl)

        def _obj(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            for key, val in v.items():
                check = props.get(key)
                if check is not None:
                    if not check(val):
                        return False
                elif addl_check is not None and not addl_check(val):
                    return False
            return True

        checks.append(_obj)
    if "allOf" in schema:
        checks.extend(compile_checker(s) for s in schema["allOf"])
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


# --------------------------------------------------------------------------------------------------
# Validators


def _dot_path(path: Any) -> str:
    return ".".join(str(p) for p in path)


def _field_error(err: Any) -> FieldError:
    path = _dot_path(err.absolute_path)
    validator = err.validator
    if validator == "required":
        missing = err.message.split("'")[1] if "'" in err.message else ""
        return {
            "field": f"{path}.{missing}" if path else missing,
            "code": "required",
            "message": "This field is required",
        }
    code = {
        "type": "invalid_type",
        "enum": "invalid_value",
        "maxItems": "too_many_items",
        "minItems": "too_few_items",
        "minimum": "out_of_range",
        "maximum": "out_of_range",
        "minLength": "too_short",
        "maxLength": "too_long",
        "additionalProperties": "unknown_field",
    }.get(validator, "invalid")
    return {"field": path, "code": code, "message": err.message}


class RequestValidator:
    """Validate one kind of request body; ``errors(body)`` lists every invalid field (empty if valid)."""

    def __init__(self, schema: dict[str, Any], extra: Callable[[Any], list[FieldError]] | None = None):
        self.schema = schema
        self.validator = Draft202012Validator(schema)
        try:
            self.fast: Check | None = compile_checker(schema)
        except UnsupportedSchema:
            self.fast = None
        self.extra = extra

    def schema_errors(self, body: Any) -> list[FieldError]:
        if self.fast is not None and self.fast(body):
            return []
        errs = sorted(self.validator.iter_errors(body), key=lambda e: tuple(map(str, e.absolute_path)))
        return [_field_error(e) for e in errs]

    def errors(self, body: Any) -> list[FieldError]:
        errs = self.schema_errors(body)
        if self.extra is not None:
            # Only look at well-typed parts: the extra checks skip anything of the wrong type.
            errs.extend(e for e in self.extra(body) if e not in errs)
        return errs


def contact_extra_errors(body: Any, prefix: str = "") -> list[FieldError]:
    """Checks Omnisend applies beyond the JSON schema to a ContactRequest."""
    if not isinstance(body, dict):
        return []
    errs: list[FieldError] = []
    idents = body.get("identifiers")
    if isinstance(idents, list):
        emails = 0
        for i, ident in enumerate(idents):
            if not isinstance(ident, dict):
                continue
            value, kind = ident.get("id"), ident.get("type")
            field = f"{prefix}identifiers.{i}.id"
            if kind == "email" and isinstance(value, str):
                emails += 1
                if not looks_like_email(value):
                    errs.append(
                        {"field": field, "code": "invalid_format", "message": "Must be a valid email address"}
                    )
            elif kind == "phone" and isinstance(value, str) and not is_e164(value):
                errs.append(
                    {
                        "field": field,
                        "code": "invalid_format",
                        "message": "Must be a phone number in E.164 format, e.g. +1234567890",
                    }
                )
            channels = ident.get("channels")
            if isinstance(channels, dict):
                for name, ch in channels.items():
                    if (
                        isinstance(ch, dict)
                        and isinstance(ch.get("statusChangedAt"), str)
                        and parse_rfc3339(ch["statusChangedAt"]) is None
                    ):
                        errs.append(
                            {
                                "field": f"{prefix}identifiers.{i}.channels.{name}.statusChangedAt",
                                "code": "invalid_format",
                                "message": "Must be an RFC 3339 date-time",
                            }
                        )
            consent = ident.get("consent")
            if (
                isinstance(consent, dict)
                and isinstance(consent.get("createdAt"), str)
                and parse_rfc3339(consent["createdAt"]) is None
            ):
                errs.append(
                    {
                        "field": f"{prefix}identifiers.{i}.consent.createdAt",
                        "code": "invalid_format",
                        "message": "Must be an RFC 3339 date-time",
                    }
                )
        if emails > 1:
            errs.append(
                {
                    "field": f"{prefix}identifiers",
                    "code": "invalid_value",
                    "message": "A contact can have only one email identifier",
                }
            )
    if isinstance(body.get("birthdate"), str) and not _is_date(body["birthdate"]):
        errs.append(
            {
                "field": f"{prefix}birthdate",
                "code": "invalid_format",
                "message": "Must be a date in YYYY-MM-DD format",
            }
        )
    cc = body.get("countryCode")
    if isinstance(cc, str) and not re.fullmatch(r"[A-Za-z]{2}", cc):
        errs.append(
            {
                "field": f"{prefix}countryCode",
                "code": "invalid_format",
                "message": "Must be an ISO 3166-1 alpha-2 country code",
            }
        )
    return errs


def tags_extra_errors(body: Any) -> list[FieldError]:
    if not isinstance(body, dict):
        return []
    selectors = ("contactIDs", "emails", "phones", "segmentID")
    if not any(body.get(s) for s in selectors):
        return [
            {
                "field": "contactIDs",
                "code": "required",
                "message": "At least one of contactIDs, emails, phones or segmentID is required",
            }
        ]
    return []


class Validators:
    """All request validators, compiled once."""

    def __init__(self) -> None:
        self.contact = RequestValidator(request_schema("contacts", "ContactRequest"), contact_extra_errors)
        self.add_tags = RequestValidator(request_schema("contacts", "AddTagsRequest"), tags_extra_errors)
        self.remove_tags = RequestValidator(
            request_schema("contacts", "RemoveTagsRequest"), tags_extra_errors
        )
        batch_schema = request_schema("batches", "CreateBatchRequest")
        self.batch = RequestValidator(batch_schema)
        # Legacy generations: the same envelope with up to 1000 items.
        legacy = json.loads(json.dumps(batch_schema))
        legacy["properties"]["items"]["maxItems"] = 1000
        self.legacy_batch = RequestValidator(legacy)
