"""Stage commands generated from config classes: each pydantic field is an option.

The option name is the field name with dashes, the help is the field's description (with
its choices and default), so neither is written twice. Every stage command also takes
`--config FILE.yaml` (a section per stage) and repeated `--set key=value` (see
`wit_builder.config` for precedence).
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from wit_builder.config import load_config

RUN_PANEL = "Run options"
RUN_FIELDS = ("out", "overwrite", "master")


def _strip_optional(tp: Any) -> Any:
    """`X | None` → X; other types unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def option_type(annotation: Any) -> Any | None:
    """The click-side type of a config field, or None for fields only `--set` can set
    (mappings). Literals become strings: pydantic checks the choice and names the key."""
    tp = _strip_optional(annotation)
    origin = typing.get_origin(tp)
    if origin is Literal:
        return str
    if origin is list:
        (item,) = typing.get_args(tp) or (str,)
        return list[item if item in (int, float, Path) else str]
    if origin is not None or tp not in (str, int, float, bool, Path):
        return None
    return tp


def _default_text(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else ""
    if field.default is None:
        return ""
    value = field.default
    return f"default: {', '.join(map(str, value)) if isinstance(value, list) else value}"


def option_help(field: FieldInfo, annotation: Any) -> str:
    """The field's description, its choices (Literal fields) and its default."""
    parts = [field.description or ""]
    tp = _strip_optional(annotation)
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
        parts.append("repeatable")
    if typing.get_origin(tp) is Literal:
        parts.append("one of " + ", ".join(map(str, typing.get_args(tp))))
    parts.append(_default_text(field))
    return "; ".join(p for p in parts if p)


def field_parameter(name: str, field: FieldInfo) -> inspect.Parameter | None:
    """The typer option of one config field (None if it is set through `--set` only)."""
    tp = option_type(field.annotation)
    if tp is None:
        return None
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    flag = str(extra.get("flag") or "--" + name.replace("_", "-"))
    decls = [f"{flag}/--no-{flag[2:]}"] if tp is bool else [flag]
    option = typer.Option(None, *decls, help=option_help(field, field.annotation),
                          show_default=False,
                          rich_help_panel=RUN_PANEL if name in RUN_FIELDS else None)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=tp | None)


def common_parameters() -> list[inspect.Parameter]:
    """`--config` and `--set`, which every stage command has."""
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("config", kw, annotation=Path | None, default=typer.Option(
            None, "--config", help="YAML config file (one section per stage)",
            rich_help_panel=RUN_PANEL)),
        inspect.Parameter("set_", kw, annotation=list[str] | None, default=typer.Option(
            None, "--set", help="override any config key: key=value (repeatable)",
            rich_help_panel=RUN_PANEL)),
    ]


def stage_command(name: str, config_cls: type[BaseModel], help_text: str,
                  run: Callable[[Any], None], on: typer.Typer,
                  wrap: Callable[[Callable], Callable], group_action: bool = False) -> None:
    """Register `wit <name>` on `on`: options from `config_cls`'s fields, then
    `run(config)`; `wrap` adds the CLI's error handling.

    With `group_action`, the command is the group `on`'s own action, run when no
    sub-command is given (`wit overlap` vs `wit overlap report`).
    """
    params = [p for n, f in config_cls.model_fields.items()
              if (p := field_parameter(n, f)) is not None]
    params += common_parameters()
    if group_action:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           annotation=typer.Context))

    def command(**kwargs: Any) -> None:
        ctx = kwargs.pop("ctx", None)
        if ctx is not None and ctx.invoked_subcommand is not None:
            return
        sets, config_file = kwargs.pop("set_"), kwargs.pop("config")
        run(load_config(config_cls, name, config_file, kwargs, sets))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = help_text
    command.__name__ = name
    if group_action:
        on.callback(invoke_without_command=True, help=help_text)(wrap(command))
    else:
        on.command(name, help=help_text)(wrap(command))
