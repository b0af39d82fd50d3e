"""Loading a config: defaults <- YAML file (`--config`: a path, or the name of a config shipped in the package, see
`shipped_configs`) <- dotted CLI overrides (`--rl.kl_coef 0.05`), validated against `config.Config`."""
from __future__ import annotations

import types
import typing
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ValidationError

from rewdistill.config import Config, ConfigError


def _where(err: dict) -> str:
    return ".".join(str(p) for p in err["loc"])


def _field(loc) -> typing.Any:
    """The annotation of the config field at `loc` (('rl', 'algo') or 'rl.algo'); None when there is none."""
    parts = loc.split(".") if isinstance(loc, str) else list(loc)
    model: typing.Any = Config
    for p in parts:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or p not in model.model_fields:
            return None
        model = model.model_fields[p].annotation
    return model


def _members(ann) -> list:
    """The members of a union annotation (`str | None` -> [str, NoneType]); [ann] for any other."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(ann) for m in _members(a)]
    return [ann]


def _is_str_literal(ann) -> bool:
    return typing.get_origin(ann) is Literal and all(isinstance(v, str) for v in typing.get_args(ann))


def _literal_values(ann) -> list:
    return [v for m in _members(ann) if typing.get_origin(m) is Literal for v in typing.get_args(m)]


def _error_message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "literal_error":
        values = _literal_values(_field(err["loc"]))
        if values:
            hint = (" (YAML reads unquoted no / off / yes / on as booleans: quote it, e.g. \"no\")"
                    if isinstance(err["input"], bool) else "")
            return f"{err['input']!r} is not one of {', '.join(map(str, values))}{hint}"
    return err["msg"]


def validate(data: dict, source: str) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        msg = _error_message(err)
        raise ConfigError(f"{source}: {_where(err)}: {msg}{more}; see `rewdistill run --help`") from None


def set_dotted(data: dict, key: str, value) -> None:
    """data['a']['b'] = value for key 'a.b', creating sections as needed."""
    parts = key.split(".")
    for p in parts[:-1]:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise ConfigError(f"option --{key}: {p} is not a section")
    data[parts[-1]] = value


def parse_override(key: str, raw):
    """The value of option `--key raw`. Parsed as YAML (numbers, lists, true/false, null), except that a string
    field (str, or Literal[...] of strings) gets exactly the text typed: YAML would turn `no`, `off`, `on` into
    booleans and `1.5` into a number. null still clears a field that may be null, and a list still sets a field
    that may be a list (lora.target_modules)."""
    if not isinstance(raw, str):
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    members = _members(_field(key))
    takes_str = any(m is str or _is_str_literal(m) for m in members)
    if not takes_str:
        return value
    if value is None and type(None) in members:
        return None
    if isinstance(value, list) and any(typing.get_origin(m) is list for m in members):
        return value
    return raw


SHIPPED_CONFIGS = "configs"  # folder of the package that holds the shipped YAML configs


def shipped_configs() -> dict[str, resources.abc.Traversable]:
    """The configs shipped inside the package, by name (file name without .yaml)."""
    folder = resources.files("rewdistill") / SHIPPED_CONFIGS
    if not folder.is_dir():
        return {}
    return {f.name[: -len(".yaml")]: f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def find_config(path: str):
    """The config file `path` names: a file, or else (a bare name, with or without .yaml) a shipped config."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = shipped_configs()
    name = p.name.removesuffix(".yaml")
    if p.name == path and name in shipped:  # a bare name, not a path into some folder
        return shipped[name]
    what = "is not a file" if p.exists() else "does not exist"
    if name in shipped:  # e.g. the configs/<name>.yaml of a checkout, now inside the package
        raise ConfigError(f"config file {path} {what}; for the shipped config of that name write --config {name}")
    raise ConfigError(f"config file {path} {what} and is not the name of a shipped config (shipped: "
                      f"{', '.join(shipped) or 'none'})")


def load_config(path: str | None, overrides: dict[str, str]) -> Config:
    """Defaults, then the YAML file (a path or a shipped config's name), then `overrides` ({'rl.kl_coef': '0.05'};
    values parsed by `parse_override`)."""
    data: dict = {}
    source = "options"
    if path:
        f = find_config(path)
        source = str(f)
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a mapping of sections")
    for key, raw in overrides.items():
        set_dotted(data, key, parse_override(key, raw))
    return validate(data, source)


def iter_fields(model: type[BaseModel] = Config, prefix: str = ""):
    """(dotted key, description, default) of every leaf option, for the CLI's help."""
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from iter_fields(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", f.description or "", f.default
