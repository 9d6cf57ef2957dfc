"""JSON Schema checks of function calls: whether a declared schema is one, and what is
wrong with a call's arguments, in a few words a model or a client can act on. Used by the
reply brain (the client's functions, the skills, MCP tools), the Realtime API's
``session.update``, and the skills' own tools (also served over MCP)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from jsonschema import exceptions as schema_errors
from jsonschema import validators
from referencing.exceptions import Unresolvable

_MAX_PROBLEM = 200  # characters of jsonschema's message that are kept


def _dialect(schema: dict[str, Any]) -> Any:
    """The validator class of the dialect ``schema``'s ``$schema`` names; 2020-12 where it
    names none, or one ``jsonschema`` does not know (ValueError: no URI)."""
    uri = schema.get("$schema")
    if uri is not None and not isinstance(uri, str):
        raise ValueError("$schema must be a URI")
    return validators.validator_for(schema, default=validators.Draft202012Validator)


def schema_problem(schema: dict[str, Any]) -> str | None:
    """What makes ``schema`` no valid JSON Schema (None: it is one)."""
    try:
        _dialect(schema).check_schema(schema)
    except ValueError as error:
        return str(error)
    except schema_errors.SchemaError as error:
        where = _where(error.path)
        return f"{f'at {where}: ' if where else ''}{_short(error.message)}"
    except RecursionError:
        return "it is nested too deeply"
    return None


def _validator(schema: Any) -> Any:
    """A validator of ``schema`` (None: no valid schema)."""
    try:
        return _validator_of(json.dumps(schema, sort_keys=True))
    except (TypeError, ValueError, RecursionError):
        return None


@functools.lru_cache(maxsize=256)
def _validator_of(key: str) -> Any:
    """The validator of the schema whose JSON is ``key``, kept for the next call."""
    schema = json.loads(key)
    if not isinstance(schema, dict) or schema_problem(schema) is not None:
        return None
    return _dialect(schema)(schema)


def arguments_problem(name: str, arguments: str, parameters: Any,
                      strict: bool = True) -> str | None:
    """What is wrong with the model's ``arguments`` for the function ``name`` whose schema
    is ``parameters`` (None: a JSON object that matches it), in a few words: e.g.
    "arguments for get_weather: 'city' is a required property". Where the schema cannot be
    applied (an invalid one, as an MCP server may declare, or a ``$ref`` that does not
    resolve), only the JSON object is checked."""
    try:
        args = json.loads(arguments or "{}", strict=strict)
    except (ValueError, RecursionError):
        return f"arguments for {name} are not valid JSON"
    if not isinstance(args, dict):
        return f"arguments for {name} are not a JSON object"
    validator = _validator(parameters)
    if validator is None:
        return None
    try:
        error = schema_errors.best_match(validator.iter_errors(args))
    except (Unresolvable, RecursionError):
        return None
    if error is None:
        return None
    where = _where(error.absolute_path)
    return f"arguments for {name}: {f'{where}: ' if where else ''}{_short(error.message)}"


def _where(path: Sequence[Any]) -> str:
    """A JSON path as ``a.b[2].c``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{part}"
    return _short(text)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_PROBLEM else text[:_MAX_PROBLEM - 3] + "..."
