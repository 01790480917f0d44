"""Templates: a script with ``{{name}}`` placeholders and typed parameters. Pure.

A value never becomes part of the command text. ``render`` turns every
placeholder into a reference to an environment variable, ``"${BF_PARAM_name}"``
(quoted, so a value is one word, never split or globbed; inside a double-quoted
string it is ``${BF_PARAM_name}``, already quoted), and ``bind`` checks the
values and gives that environment. Bash expands a variable once and never runs
what it expands to, so ``$(rm -rf /)`` as a value is text. A placeholder inside
single quotes would not be expanded at all and is refused; so is one the
parameters do not define. (A script that hands a value to ``eval`` or ``bash -c``
makes it code again: that is the template author's doing, and the judge classes
such scripts dangerous.)

Parameter definitions: ``name`` (letters, digits, ``_``), ``type`` (``string``,
``int``, ``bool``, ``choice``), ``required``, ``default``, ``pattern`` (a regular
expression a string must match in full), ``choices`` (for ``choice``),
``description``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sandbox.errors import InputError

PREFIX = "BF_PARAM_"
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
TYPES = ("string", "int", "bool", "choice")
MAX_PARAMS = 50
MAX_VALUE = 4096
MAX_PATTERN = 200
DEF_KEYS = {"name", "type", "required", "default", "pattern", "choices", "description"}


def check_definitions(value: Any) -> list[dict[str, Any]]:
    """The parameter definitions, checked and normalised (InputError names what is wrong)."""
    if not isinstance(value, list) or len(value) > MAX_PARAMS:
        raise InputError(f"`params` is a list of at most {MAX_PARAMS} parameter definitions")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, d in enumerate(value):
        where = f"`params[{i}]`"
        if not isinstance(d, dict):
            raise InputError(f"{where} is an object with name and type")
        unknown = sorted(set(d) - DEF_KEYS)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}")
        name = d.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InputError(f"{where}.name: letters, digits and _, not starting with a digit")
        if name in seen:
            raise InputError(f"{where}.name: {name!r} is defined twice")
        seen.add(name)
        kind = d.get("type", "string")
        if kind not in TYPES:
            raise InputError(f"{where}.type is one of {', '.join(TYPES)}")
        spec: dict[str, Any] = {"name": name, "type": kind, "required": d.get("required", False)}
        if not isinstance(spec["required"], bool):
            raise InputError(f"{where}.required is true or false")
        if "description" in d:
            if not isinstance(d["description"], str) or len(d["description"]) > 500:
                raise InputError(f"{where}.description is text of at most 500 characters")
            spec["description"] = d["description"]
        if "pattern" in d:
            pattern = d["pattern"]
            if kind != "string" or not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
                raise InputError(f"{where}.pattern: a string parameter's regular expression")
            try:
                re.compile(pattern)
            except re.error as e:
                raise InputError(f"{where}.pattern is not a regular expression: {e}") from None
            spec["pattern"] = pattern
        if kind == "choice":
            choices = d.get("choices")
            if (
                not isinstance(choices, list)
                or not choices
                or not all(isinstance(c, str) and len(c) <= MAX_VALUE for c in choices)
            ):
                raise InputError(f"{where}.choices: a choice parameter's list of strings")
            spec["choices"] = list(choices)
        elif "choices" in d:
            raise InputError(f"{where}.choices is only for type choice")
        if "default" in d:
            spec["default"] = _value(spec, d["default"], f"{where}.default")
        out.append(spec)
    return out


def render(script: str, definitions: list[dict[str, Any]]) -> str:
    """The script with each placeholder replaced by a quoted reference to its variable."""
    names = {d["name"] for d in definitions}
    out: list[str] = []
    state = ""  # "" | "'" | '"'
    i = 0
    while i < len(script):
        match = PLACEHOLDER.match(script, i)
        if match:
            name = match.group(1)
            if name not in names:
                raise InputError(f"the script uses {{{{{name}}}}}, which `params` does not define")
            if state == "'":
                raise InputError(
                    f"{{{{{name}}}}} is inside single quotes, where it would not be expanded"
                )
            ref = "${" + PREFIX + name + "}"
            out.append(ref if state == '"' else f'"{ref}"')
            i = match.end()
            continue
        c = script[i]
        if c == "\\" and state != "'":
            out.append(script[i : i + 2])
            i += 2
            continue
        if c in "'\"" and (state == "" or state == c):
            state = "" if state == c else c
        out.append(c)
        i += 1
    return "".join(out)


def bind(definitions: list[dict[str, Any]], values: Any) -> dict[str, str]:
    """The environment for the values given (defaults filled in); InputError names the
    parameter that is missing, unknown or wrong."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError('`params` maps parameter names to values: {"name": "value"}')
    known = {d["name"]: d for d in definitions}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"`params`: unknown parameter(s) {', '.join(unknown)}")
    env: dict[str, str] = {}
    for name, d in known.items():
        if name in values:
            env[PREFIX + name] = _value(d, values[name], f"`params.{name}`")
        elif "default" in d:
            env[PREFIX + name] = d["default"]
        elif d["required"]:
            raise InputError(f"`params.{name}` is required")
        else:
            env[PREFIX + name] = ""
    return env


def _value(d: Mapping[str, Any], value: Any, where: str) -> str:
    kind = d["type"]
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 1 << 53:
            raise InputError(f"{where} must be a whole number")
        return str(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise InputError(f"{where} must be true or false")
        return "true" if value else "false"
    if not isinstance(value, str) or len(value) > MAX_VALUE or "\x00" in value:
        raise InputError(f"{where} must be text of at most {MAX_VALUE} characters, without NUL")
    if kind == "choice" and value not in d["choices"]:
        raise InputError(f"{where} must be one of {', '.join(d['choices'])}")
    if "pattern" in d and not re.fullmatch(d["pattern"], value):
        raise InputError(f"{where} does not match the pattern {d['pattern']}")
    return value
