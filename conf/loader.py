"""Loading the configuration: the YAML file, then ``ISSUERISK__SECTION__KEY`` environment overrides, then flags,
validated once into the frozen :class:`~issuerisk.conf.settings.Config`; every problem is collected and named at once.

The models (what each section holds, its defaults and rules) are in :mod:`issuerisk.conf.settings`.
"""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from issuerisk.conf.settings import DEFAULT_CONFIG, ENV_PREFIX, Config, ConfigError

_KINDS = {bool: "true/false", int: "a number", float: "a number", str: "a string", list: "a list"}


def _field(model: type[BaseModel] | None, name: str) -> tuple[str, Any]:
    """What a key of ``model`` holds: ``("section", Model)``, ``("mapping", value type)``, ``("value", type)`` or
    ``("unknown", None)``."""
    field = model.model_fields.get(name) if model is not None else None
    if field is None:
        return "unknown", None
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section", annotation
    if typing.get_origin(annotation) is dict:
        return "mapping", typing.get_args(annotation)[1]
    return "value", annotation


def _parse(raw: str, annotation: Any) -> Any:
    """An environment value for a key of type ``annotation``: verbatim for strings (``null`` is None where
    allowed), YAML for everything else, so ``4``, ``true`` and ``[a, b]`` become a number, a flag and a list."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    if str in args:
        return None if type(None) in args and raw.strip() in ("", "~", "null", "Null", "NULL") else raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _normalize(data: dict[str, Any], model: type[BaseModel], prefix: str, problems: list[str]) -> None:
    """Empty sections (``spark:`` alone, which YAML reads as None) become ``{}``; a section that is not a mapping is a
    problem."""
    for name, value in data.items():
        kind, inner = _field(model, name)
        if kind not in ("section", "mapping"):
            continue
        if value is None:
            data[name] = {}
        elif not isinstance(value, dict):
            problems.append(
                f"  {prefix}{name}: must be a mapping of keys (indented `key: value` lines below `{name}:`), "
                f"got {_KINDS.get(type(value), type(value).__name__)}; see conf/default.yaml"
            )
        elif kind == "section":
            _normalize(value, inner, f"{prefix}{name}.", problems)


def _place(
    data: dict[str, Any], parts: list[str], sep: str, value: Any, source: str, problems: list[str], parse: bool
) -> None:
    """Set the key that ``parts`` names: sections and keys case-insensitively; below a mapping-valued key
    (``spark.extra``) the rest of ``parts``, joined by ``sep``, is one key of that mapping, verbatim, added to
    what the file or the default holds. Problems (a part that is empty, or that descends into a single value
    or a non-mapping) are appended to ``problems`` with ``source``, the variable or flag that asked."""
    node, model, path = data, Config, []
    for depth, part in enumerate(parts):
        name, rest = part.lower(), parts[depth + 1 :]
        if not name:
            problems.append(
                f"  {source}: names an empty key; write {ENV_PREFIX}SECTION__KEY=value (see conf/default.yaml)"
            )
            return
        kind, inner = _field(model, name)
        path.append(name)
        if kind == "mapping" and rest:
            if node.get(name) is None:
                node[name] = dict(model.model_fields[name].get_default(call_default_factory=True) or {})
            mapping = _descend(node, name, path, source, problems)
            key = sep.join(rest)
            if mapping is not None and not key:
                problems.append(f"  {source}: names an empty key of {'.'.join(path)}")
            elif mapping is not None:
                mapping[key] = _parse(value, inner) if parse else value
            return
        if not rest:
            node[name] = _parse(value, inner if kind == "value" else None) if parse else value
            return
        if kind == "value":
            itself = (ENV_PREFIX if sep == "__" else "") + sep.join(parts[: depth + 1])
            problems.append(
                f"  {source}: {'.'.join(path)} is a single value, not a section, so it has no key "
                f"{sep.join(rest)!r}; set {itself} itself"
            )
            return
        node = _descend(node, name, path, source, problems)
        if node is None:
            return
        model = inner if kind == "section" else None


def _descend(
    node: dict[str, Any], name: str, path: list[str], source: str, problems: list[str]
) -> dict[str, Any] | None:
    child = node.get(name)
    if child is None:
        child = node[name] = {}
    if not isinstance(child, dict):
        problems.append(
            f"  {source}: {'.'.join(path)} is {_KINDS.get(type(child), type(child).__name__)} in the configuration, "
            "not a section, so nothing can be set below it; fix the file or the other override"
        )
        return None
    return child


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Set dotted keys (``embed.model``, ``spark.extra.spark.sql.ansi.enabled``) to values already parsed (command-line
    flags)."""
    for dotted, value in overrides.items():
        _place(data, dotted.split("."), ".", value, f"override {dotted}", problems, parse=False)
    return data


def _env_overrides(data: dict[str, Any], environ: dict[str, str], problems: list[str]) -> dict[str, Any]:
    """Apply ``ISSUERISK_WAREHOUSE``, ``ISSUERISK_GITHUB_API_URL`` and ``ISSUERISK__SECTION__KEY=value``."""
    for name, dotted in (("ISSUERISK_WAREHOUSE", "project.warehouse"), ("ISSUERISK_GITHUB_API_URL", "github.api_url")):
        if environ.get(name):
            _place(data, dotted.split("."), ".", environ[name], name, problems, parse=False)
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            _place(data, name[len(ENV_PREFIX) :].split("__"), "__", raw, name, problems, parse=True)
    return data


RECORDED_BEFORE: dict[tuple[str, str], Any] = {
    ("cluster", "fewer_epochs_from"): 10_000,  # umap-learn's own epoch switch
    ("cluster", "fewest_epochs_from"): None,  # 200 epochs however many issues
    ("embed", "backend"): "torch",  # the CPU default became onnx; earlier vectors are torch's, under the plain model
}
"""(section, key) -> the value that reproduces what runs recorded before the key existed did."""


def as_recorded(data: dict[str, Any]) -> dict[str, Any]:
    """A run's recorded config with the keys it predates set to what that run did, not to today's defaults (for every
    command that re-runs or continues a recorded run: replay, assign)."""
    for (section, key), value in RECORDED_BEFORE.items():
        if isinstance(data.get(section), dict) and key not in data[section]:
            data[section][key] = value
    return data


def validate(data: dict[str, Any]) -> Config:
    """Validate plain data, raising one ConfigError that lists every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "<root>"
            if err["type"] == "extra_forbidden":
                problems.append(f"  {key}: unknown key; remove it or check its spelling against conf/default.yaml")
            elif err["type"] == "missing":
                problems.append(f"  {key}: required and missing")
            elif err["type"] == "credentials_in_url":
                problems.append(f"  {key}: {err['msg']}")
            else:
                got = err.get("input")
                shown = "" if isinstance(got, dict) else f" (got {got!r})"
                problems.append(f"  {key}: {err['msg']}{shown}")
        raise ConfigError("invalid configuration:\n" + "\n".join(problems)) from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Load a YAML config, apply environment overrides, then command-line overrides, and validate once.

    Args:
        path: YAML file; None reads ``ISSUERISK_CONFIG`` or ``conf/default.yaml``.
        environ: environment to read overrides from (``os.environ`` by default).
        overrides: dotted keys set last (``{"project.warehouse": "/tmp/wh", "embed.model": "..."}``).

    Raises:
        ConfigError: the file is missing or unreadable; a section is not a mapping; an override descends
            into a single value or names an empty key; a key is unknown or invalid; a URL carries credentials.
    """
    env = dict(os.environ if environ is None else environ)
    file = Path(path or env.get("ISSUERISK_CONFIG") or DEFAULT_CONFIG)
    if not file.is_file():
        raise ConfigError(f"config file {file} not found; pass --config PATH or set ISSUERISK_CONFIG")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file} must hold a mapping of sections, got {type(data).__name__}")
    problems: list[str] = []
    _normalize(data, Config, "", problems)
    if not problems:
        data = _apply_overrides(_env_overrides(data, env, problems), overrides or {}, problems)
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
    project = data.get("project")
    warehouse = project.get("warehouse") if isinstance(project, dict) else None
    if isinstance(warehouse, str) and "://" not in warehouse and not os.path.isabs(warehouse):
        data["project"]["warehouse"] = str(Path(warehouse).resolve())
    return validate(data)
