"""The structure of a normalised answer: several values, the value side of an equation, a set given as an inequality.

These exist because the cheap string and number rules see an answer as one token, while real answers are
often "x = 2, x = -3" against the gold "-3, 2", "\\frac{16}{4} = 4" against "4", or "x < 3" against
"(-\\infty, 3)". Everything works on ``normalize``'s output (spaces dropped, ``\\leq`` spelt ``\\le``) in one
linear pass per rule, and every rule is conservative: where the structure is unclear the answer is left
whole, so a rule can only ever settle a pair the way a careful reader would.
"""

from __future__ import annotations

import re

_OPEN, _CLOSE = "([{", ")]}"
# A single named quantity: x, a_1, a_{12}, \theta, f(3). The left side of an assignment or an inequality.
_SYMBOL = re.compile(r"^(?:[a-zA-Z](?:_\{?\w{1,3}\}?)?(?:\([^()=]{0,20}\))?|\\(?!infty|pi\b)[a-zA-Z]{2,10})$")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_LETTER = re.compile(r"[a-zA-Z]")
# Words that join the values of a list: "2 and 3", "x = 1 or x = 2" (the words survive normalize as letters).
_LIST_WORDS = re.compile(r"(?<=[\d}).]),?(?:and|or) ?(?=[-\d\\(a-zA-Z])")
# "and" between named values: "x=1andy=2" ("or" is not: "x=1 or y=2" is no pair of values).
_AND = re.compile(r"(?<=[\d}).]),?and ?(?=[-\d\\(a-zA-Z])")
_PLUS_MINUS = "\\pm"
_RELATION = re.compile(r"(\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|<|>)")
_LESS = {"<": ("(", ")"), "\\le": ("[", "]")}  # a < x: open bracket; a \le x: closed
_MIRROR = {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}  # the same relation read from the other side
_INFINITY = "\\infty"


def split_top(text: str, separator: str) -> list[str]:
    """``text`` cut at each ``separator`` outside brackets and braces (one pass; unbalanced text stays whole)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth < 0:
                return [text]
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [text] if depth else parts + [text[start:]]


def has_letters(text: str) -> bool:
    """Whether ``text`` names a variable: a letter outside LaTeX commands (``\\frac``, ``\\pi`` are not)."""
    return _LETTER.search(_COMMAND.sub("", text)) is not None


def is_symbol(text: str) -> bool:
    """Whether ``text`` is one named quantity (``x``, ``a_1``, ``\\theta``, ``f(3)``), not an expression."""
    return _SYMBOL.match(text) is not None


def value_side(text: str) -> str | None:
    """The value an equation states, or None when ``text`` is not a chain ending in a value.

    ``x=5``, ``m+n=33`` and ``\\frac{16}{4}=4`` state a value (the last side); ``y=2x+3`` too, since its left
    side is a lone variable. ``5x-7y+11z+4=0`` or ``2x+3=5x`` are equations, not values: None, so they are
    compared whole and never match the gold "0" or "5x" by one of their sides.
    """
    sides = split_top(text, "=")
    if len(sides) < 2 or not all(sides) or len(split_top(text, ",")) > 1:  # "x=1,y=2" is a list, not a chain
        return None
    last, earlier = sides[-1], sides[:-1]
    if has_letters(last) and not is_symbol(earlier[0]):
        return None
    if last == "0" and any(has_letters(side) for side in earlier):
        return None
    return last


def equation_set_to_zero(text: str) -> bool:
    """Whether ``text`` is an equation in variables set to zero (``x^2-5x+6=0``): it states no value."""
    sides = split_top(text, "=")
    return len(sides) >= 2 and sides[-1] == "0" and any(has_letters(side) for side in sides[:-1])


def _expand_plus_minus(value: str) -> list[str]:
    """``3\\pm2\\sqrt{2}`` -> both values; more than one ``\\pm`` (or a nested one) is left whole."""
    if value.count(_PLUS_MINUS) != 1:
        return [value]
    head, _, tail = value.partition(_PLUS_MINUS)
    if tail[:1].isalpha():  # \pmatrix or such, not a sign
        return [value]
    return [f"{head}+{tail}" if head else tail, f"{head}-{tail}"]


def values(text: str) -> list[str]:
    """The values of a normalised answer: ``2,-3``, ``x=2,x=-3``, ``2or3``, ``\\{1,2\\}``, ``\\pm2`` are lists.

    A parenthesised tuple or an interval is one value (order or openness matters inside it). Each value
    has its single-variable assignment removed (``x=2`` -> ``2``). An answer that is no list is ``[text]``.
    """
    if text.startswith("{") and text.endswith("}") and len(split_top(text[1:-1], ",")) > 1:
        text = text[1:-1]  # a set literal \{1, 2\} (normalize has already dropped the backslashes)
    parts = split_top(_LIST_WORDS.sub(",", text), ",")
    if len(parts) < 2 or not all(parts):
        parts = [text]
    out = []
    for part in parts:
        side = value_side(part)
        if side is not None and is_symbol(split_top(part, "=")[0]):
            part = side
        out.extend(_expand_plus_minus(part))
    return out


def tuple_items(text: str) -> list[str] | None:
    """The entries of a parenthesised tuple ``(a,b,...)`` with at least two entries, else None."""
    if not (text.startswith("(") and text.endswith(")")):
        return None
    items = split_top(text[1:-1], ",")
    return items if len(items) >= 2 and all(items) and split_top(text, ",") == [text] else None


def named_values(text: str) -> dict[str, str] | None:
    """The values an answer gives by name (``x=1,y=2``, ``(x,y)=(1,2)``, ``(f(n),g(n))=(n,1)``), else None.

    Needs ``normalize``'s output with the assignment kept (``keep_assignment``): at least two names, each a
    single named quantity (``is_symbol``) given once, each with a value. Named values are compared by name,
    which their bare values cannot be: ``y=2,x=1`` is ``(x,y)=(1,2)``, and ``x=2,y=1`` is not ``x=1,y=2``
    although, as sets, their values are the same.
    """
    sides = split_top(text, "=")
    names, given = (tuple_items(sides[0]), tuple_items(sides[1])) if len(sides) == 2 else (None, None)
    if names and given:
        if len(names) != len(given):
            return None
        pairs = list(zip(names, given))
    else:
        pairs = [split_top(part, "=") for part in split_top(_AND.sub(",", text), ",")]
        if not all(len(pair) == 2 for pair in pairs):
            return None
    keys = [name for name, _ in pairs]
    if len(pairs) < 2 or len(set(keys)) != len(keys) or not all(is_symbol(name) and value for name, value in pairs):
        return None
    return dict(pairs)


def as_interval(text: str) -> str | None:
    """The interval an inequality in one variable describes, in ``normalize``'s spelling, else None.

    ``x<3`` -> ``(-\\infty,3)``, ``k\\ge5`` -> ``[5,\\infty)``, ``2\\lex<5`` -> ``[2,5)``. The bounds must be free of
    other variables, so the variable is clear; anything else (unions, two variables) is not converted.
    """
    pieces = [piece.strip() for piece in _RELATION.split(text)]
    if len(pieces) == 3:
        left, relation, right = pieces
        if is_symbol(right) and left and not has_letters(left):
            left, relation, right = right, _MIRROR[relation], left
        if not (is_symbol(left) and right) or has_letters(right):
            return None
        if relation in _LESS:
            return f"(-{_INFINITY},{right}{_LESS[relation][1]}"
        return f"{_LESS[_MIRROR[relation]][0]}{right},{_INFINITY})"
    if len(pieces) == 5:
        low, first, symbol, second, high = pieces
        if not (is_symbol(symbol) and low and high) or has_letters(low) or has_letters(high):
            return None
        if first not in _LESS and second not in _LESS:  # b > x > a is a < x < b
            low, high, first, second = high, low, _MIRROR[second], _MIRROR[first]
        if first in _LESS and second in _LESS:
            return f"{_LESS[first][0]}{low},{high}{_LESS[second][1]}"
    return None


def unambiguous_interval(text: str) -> bool:
    """Whether ``text`` is interval notation that cannot be a point or a tuple: an infinite end or a bracket.

    ``(1,2)`` is as likely the point (1, 2) as the open interval, so it is never read as a set here.
    """
    if len(text) < 5 or text[0] not in "([" or text[-1] not in ")]" or len(split_top(text[1:-1], ",")) != 2:
        return False
    return _INFINITY in text or text[0] == "[" or text[-1] == "]"
