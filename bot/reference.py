"""The configuration reference (docs/CONFIGURATION.md), generated from the config models.

Regenerate after changing a config model:

    .venv/bin/python -m bot.reference > docs/CONFIGURATION.md

tests/test_deployment.py fails when the committed file differs, so the docs cannot drift.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, TypeGuard

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot.config import MombotConfig
from brain.extensions import available_extensions

HEADER = """# Configuration reference

Generated from the config models by `python -m bot.reference`; do not edit by hand.
`config.toml` in the repository root is a commented example with every default.
Secrets never go in the file: they come from the environment or a `.env` file
(`MOMBOT_DISCORD_TOKEN`, `MOMBOT_MATRIX_PASSWORD`, `MOMBOT_MATRIX_ACCESS_TOKEN`,
`MOMBOT_DATABASE_URL`, and the variable an endpoint's `api_key_env` names).
"""


def type_name(annotation: Any) -> str:
    """A reader's name for a field type: 'text', 'number', 'one of "a", "b"', ..."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" (optional)" if type(None) in args else "")
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"table of {type_name(args[1])}"
    simple = {str: "text", int: "whole number", float: "number", bool: "true/false"}
    if annotation in simple:
        return simple[annotation]
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        if _is_model_list(field.annotation):
            return "(see below)"
        return f"`{field.get_default(call_default_factory=True, validated_data={})!r}`"
    if field.default is PydanticUndefined:
        return "required"
    value = field.default
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "unset"
    return f"`{value!r}`".replace("'", '"')


def _is_model_list(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) is list and bool(args) and _is_model(args[0])


def _is_model(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def section(title: str, model: type[BaseModel]) -> list[str]:
    """One heading and table for `model`, then a section for each nested model."""
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    lines = [f"## `{title}`", ""]
    if doc:
        lines += [" ".join(doc.split()), ""]
    rows: list[str] = []
    nested: list[tuple[str, str, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        last = args[-1] if args else None
        if _is_model(annotation):
            nested.append(
                (f"{title.strip('[]')}.{name}", f"[{title.strip('[]')}.{name}]", annotation)
            )
            continue
        if typing.get_origin(annotation) is dict and _is_model(last):
            nested.append((name, f"[{title.strip('[]')}.{name}.NAME]", last))
            continue
        if typing.get_origin(annotation) is list and _is_model(last):
            nested.append((name, f"[[{name}]]", last))
            continue
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(
            f"| `{name}` | {type_name(annotation)} | {default_text(field)} | {description} |"
        )
    if rows:
        lines += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for _, nested_title, nested_model in nested:
        lines += section(nested_title, nested_model)
    return lines


def config_reference() -> str:
    lines = [HEADER]
    for name, field in MombotConfig.model_fields.items():
        annotation = field.annotation
        args = typing.get_args(annotation)
        last = args[-1] if args else None
        if typing.get_origin(annotation) is dict and _is_model(last):
            lines += section(f"[{name}.NAME]", last)
        elif typing.get_origin(annotation) is list and _is_model(last):
            lines += section(f"[[{name}]]", last)
            lines += [
                "With no `[[characters]]` at all, mombot uses five members (logic, creativity, "
                "empathy, knowledge, critic) and the synthesizer mom, all on the bundled model.",
                "",
            ]
        elif _is_model(annotation):
            lines += section(f"[{name}]", annotation)
    for name, entry in sorted(available_extensions().items()):
        try:
            settings = entry.load().settings_model
        except Exception:  # an extension that does not load has no settings to show
            continue
        lines += section(f"[extensions.{name}]", settings)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
