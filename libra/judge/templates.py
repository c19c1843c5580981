"""Judge prompt templates: the paper's three prompts (Figs. 5-7) and user-supplied ones.

A template file may open with a header fenced by two ``---`` lines (provenance notes); the header
and the file's final newline are not part of the prompt.  Placeholders are ``{name}`` with ``name``
one of ``FIELDS``; ``{{name}}`` renders a literal ``{name}``; every other brace is literal text.

Why not ``str.format``: the fields are model text (LaTeX, code) full of braces, which ``format``
would choke on or expand.  ``render`` makes one regex pass over the template alone, so nothing
inside an inserted value is ever substituted.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

BUILTIN = ("pairwise", "pointwise", "verification")
# The non-judging (reasoning) prompt: pass@k evaluation and the RL reasoning task ask the same way.
# ``{question}`` is replaced with ``str.replace`` (the one placeholder; braces in a question stay as they are).
REASONING_PROMPT = "{question}\nPlease reason step by step, and put your final answer within \\boxed{}."
FIELDS = frozenset({"question", "response", "response_a", "response_b", "reference"})

_FENCE = "---\n"
# Group 1: an escaped {{name}}; group 2: a placeholder {name}.  Both are bounded by their braces,
# so matching is linear in the template length.
_TOKEN = re.compile(r"\{\{([A-Za-z_]\w*)\}\}|\{([A-Za-z_]\w*)\}")


def list_templates() -> list[str]:
    """Names of the built-in templates, accepted by ``render`` and ``template_fields``."""
    return list(BUILTIN)


def template_fields(template: str) -> set[str]:
    """The placeholders ``template`` (a built-in name or a file path) expects, e.g. {"question", "response"}."""
    return _fields(template, _body(template))


def render(template: str, **fields: str) -> str:
    """The prompt of ``template`` (a built-in name, which wins over a file of that name, or a file path).

    Raises ValueError, naming the field and the template, for a placeholder left without a value,
    a value for which the template has no placeholder (a misspelt keyword would otherwise vanish
    silently), or a placeholder outside ``FIELDS``; TypeError for a value that is not a str.
    """
    body = _body(template)
    expected = _fields(template, body)
    missing = sorted(expected - fields.keys())
    if missing:
        raise ValueError(f"template {template!r} needs field(s) {missing}; got {sorted(fields)}")
    unexpected = sorted(fields.keys() - expected)
    if unexpected:
        raise ValueError(
            f"template {template!r} has no placeholder for field(s) {unexpected}; it expects {sorted(expected)}"
        )
    for name, value in fields.items():
        if not isinstance(value, str):
            raise TypeError(f"field {name!r} of template {template!r} must be a str, got {type(value).__name__}")
    return _TOKEN.sub(lambda m: fields[m[2]] if m[2] else "{" + m[1] + "}", body)


def _body(template: str) -> str:
    """The template text without its header and final newline."""
    if template in BUILTIN:
        text = (resources.files(__package__) / "templates" / f"{template}.txt").read_text(encoding="utf-8")
    else:
        path = Path(template)
        if not path.is_file():
            raise ValueError(f"unknown template {template!r}: neither a built-in ({', '.join(BUILTIN)}) nor a file")
        text = path.read_text(encoding="utf-8")
    if text.startswith(_FENCE):
        end = text.find("\n" + _FENCE, len(_FENCE) - 1)
        if end < 0:
            raise ValueError(f"template {template!r}: its '---' header is never closed by a second '---' line")
        text = text[end + 1 + len(_FENCE) :]
    return text.removesuffix("\n")


def _fields(template: str, body: str) -> set[str]:
    found = {m[2] for m in _TOKEN.finditer(body) if m[2]}
    unknown = sorted(found - FIELDS)
    if unknown:
        raise ValueError(
            f"template {template!r} has unknown placeholder(s) {['{' + u + '}' for u in unknown]}; "
            f"known: {sorted(FIELDS)} (write {{{{name}}}} for a literal {{name}})"
        )
    return found
