"""Run configuration: plain dataclasses, filled from a YAML file and then from ``key=value`` overrides.

``libra train sft --config sft.yaml optim.lr=2e-5 data.train=rows.jsonl`` reads the file, applies the
overrides in order (dotted paths into nested dataclasses, values parsed as YAML scalars so ``1e-5``,
``true`` and ``[1, 2]`` mean what they look like) and checks every value against the field's type. A
wrong key or type is a ``ConfigError`` naming the file (or ``command line``), the key and the problem,
raised before any work starts, as is a value that breaks a rule of its section (``check``). The resolved
config is written into the run directory, so a run can be reproduced from its own folder. ``describe`` and
``help_text`` list every key with its type, default and doc (``libra train grpo --help-config``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """``source: key: problem`` for a config value that cannot be used."""

    def __init__(self, source: str, key: str, problem: str):
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    """An instance of the dataclass ``cls``: defaults, then the YAML file, then the overrides."""
    cfg = cls()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(str(path), "-", "config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(str(path), "-", f"not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(str(path), "-", "the top level must be a mapping of keys to values")
        cfg = _merge(cfg, data, str(path), "")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError("command line", item, "expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        nested: dict[str, Any] = {}
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
        cfg = _merge(cfg, nested, "command line", "")
    check(cfg)
    return cfg


def check(cfg) -> None:
    """Every rule that relates a config's values (a batch that divides the prompts, bounds that must order),
    run as soon as the config is loaded, before any model, tokenizer or data: each section's own ``check()``
    method, innermost first. A trainer also calls this on a config built in code."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            check(value)
    if callable(getattr(cfg, "check", None)):
        cfg.check()


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with ``load_config``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _merge(cfg, data: dict, source: str, prefix: str):
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(source, where, f"unknown key (known: {', '.join(sorted(fields))})")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(source, where, "expected a mapping (a section of the config)")
            changes[key] = _merge(current, value, source, f"{where}.")
        else:
            changes[key] = _coerce(value, hints[key], source, where)
    return dataclasses.replace(cfg, **changes)


def _coerce(value, hint, source: str, where: str):
    """``value`` checked against the annotation ``hint`` (ints widen to floats, lists to tuples)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, source, where)
            except ConfigError as err:
                errors.append(err.problem)
        raise ConfigError(source, where, "; ".join(errors))
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(source, where, f"expected one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, where, f"expected a list, got {value!r}")
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        items = [_coerce(v, inner, source, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is Any:
        return value
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(source, where, f"expected float, got {value!r}") from None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. a run name written as 7
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(source, where, f"expected {hint.__name__}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Key:
    """One settable key of a config: its dotted path, type, default and one-line doc."""

    path: str
    type: str
    default: str
    doc: str


def describe(cfg, prefix: str = "") -> list[Key]:
    """Every key of the config dataclass ``cfg`` (a class: its defaults; an instance: its values), nested
    sections flattened to dotted paths, each with the doc written beside it in the source. A field is
    documented the way the code already reads: a comment at the end of its line, or the comment block right
    above it; the doc is that comment's first sentence."""
    cfg = cfg() if isinstance(cfg, type) else cfg
    docs = field_docs(type(cfg))
    hints = typing.get_type_hints(type(cfg))
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += describe(value, f"{prefix}{f.name}.")
        else:
            keys.append(Key(f"{prefix}{f.name}", _type_name(hints[f.name]), repr(value), docs.get(f.name, "")))
    return keys


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the first sentence of the comment beside it (end of line) or right above it, from the
    class's source (documentation that stays next to the field it documents; nothing to keep in sync)."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    source = textwrap.dedent(inspect.getsource(cls))
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    lines = source.splitlines()
    docs = {}
    for node in ast.parse(source).body[0].body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        text = comments.get(node.end_lineno) or comments.get(node.lineno)
        if text is None:  # the comment block above, read back to its first line
            above, line = [], node.lineno - 1
            while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            text = " ".join(above)
        if text:
            docs[node.target.id] = _first_sentence(text)
    return docs


def _first_sentence(text: str) -> str:
    end = text.find(". ")
    return text if end < 0 else text[:end + 1]


def _type_name(hint) -> str:
    """A type as a user writes its value: ``float``, ``int | None``, ``one of cosine, linear, constant``."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"list of {_type_name(args[0])}" if args else "list"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def help_text(cls: type) -> str:
    """``--help-config``: every key of ``cls`` with its type, default and doc, one per line."""
    keys = describe(cls)
    width = max(len(k.path) for k in keys)
    return "\n".join(f"{k.path:<{width}}  {k.type} = {k.default}" + (f"\n{'':<{width}}  {k.doc}" if k.doc else "")
                     for k in keys)
