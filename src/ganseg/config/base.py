"""Loading machinery shared by every params block."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ganseg.errors import ConfigError

if TYPE_CHECKING:
    from ganseg.config.params import Params


class StrictModel(BaseModel):
    """Base for every config block: unknown keys are errors and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning I/O and syntax problems into one-line errors."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read params file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of blocks at the top level")
    return data


def format_validation_error(exc: ValidationError, path: Path) -> str:
    """One line for the first problem pydantic found: file, dotted key, what is wrong."""
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "<root>"
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown key '{key}' (check the spelling against the documented params)"
    if kind == "missing":
        return f"{path}: missing required key '{key}'"
    message = first["msg"]
    # pydantic prefixes custom validator messages; the key already says where.
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = first.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    more = len(exc.errors()) - 1
    tail = f"; {more} more problem(s)" if more else ""
    return f"{path}: {key}: {message}{shown}{tail}"


def load_params(path: Path | str = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Load and validate the whole params file; raise :class:`ConfigError` in one line."""
    from ganseg.config.params import Params

    path = Path(path)
    data = load_yaml(path)
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
