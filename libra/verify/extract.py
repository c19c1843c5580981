"""Final-answer extraction from a model response, and chain-of-thought stripping.

Everything here is a linear scan (``str.rfind`` and one brace-matching pass), never a backtracking regex:
responses come from models and can be megabytes of repeated or unbalanced braces, and the verifier's time
bound (see ``bounded``) only covers the symbolic step, so extraction itself must never be the slow part.
"""

from __future__ import annotations

import operator
import re
from array import array
from itertools import accumulate, islice

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_SKY_THOUGHT_OPEN, _SKY_THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
_SKY_SOLUTION_OPEN, _SKY_SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Boxes examined from the end before giving up: a real response never has this many broken ones in a row.
_MAX_BOX_CANDIDATES = 64
_BRACE = re.compile(r"[{}]")
_NOT_BRACE = re.compile(r"[^{}]+")
_BRACE_STEPS = bytes.maketrans(b"{}", b"\x01\xff")  # read as signed bytes: +1, -1

# Fallback phrases when there is no box, most specific first; the LAST occurrence in the text wins, and on a
# tie in position (one phrase containing another) the more specific phrase wins.
_ANSWER_PHRASES = ("the final answer is", "final answer:", "answer is")
# Words models put between "the answer is" and the answer ("the answer is indeed 6").
_FILLER = re.compile(r"^(?:(?:indeed|simply|just|definitely|clearly|therefore|thus|actually|then)\b[\s,]*)+", re.I)
# Last resort, in the response's closing lines only: a plain number ("... so 196 has 9 divisors.").
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:/\d+)?")
_LAST_LINE_CHARS = 500
_DANGLING = set("+-*/=^_{([,\\&")


def strip_thinking(text: str) -> str | None:
    """The part of ``text`` that carries the final answer, with any reasoning trace removed.

    * ``<think>…</think>`` (R1/Qwen3 style): the text after the LAST ``</think>``, also when the opening tag
      was part of the prompt and so is absent from the response;
    * SkyThought: ``<|begin_of_thought|>…<|end_of_thought|><|begin_of_solution|>…<|end_of_solution|>``: the
      solution part only;
    * a thought that was opened but never closed is a response cut off mid-reasoning: ``None`` (it has no
      final answer, and a number boxed while "thinking aloud" must not count as one).

    The V2V data builder reuses this to get the visible answer part of a response.
    """
    close = text.rfind(_THINK_CLOSE)
    if close >= 0:
        return text[close + len(_THINK_CLOSE):]
    if _THINK_OPEN in text:
        return None
    close = text.rfind(_SKY_THOUGHT_CLOSE)
    if close >= 0:
        solution = text[close + len(_SKY_THOUGHT_CLOSE):]
        start = solution.find(_SKY_SOLUTION_OPEN)
        if start >= 0:
            solution = solution[start + len(_SKY_SOLUTION_OPEN):]
        end = solution.rfind(_SKY_SOLUTION_CLOSE)
        return solution if end < 0 else solution[:end]
    if _SKY_THOUGHT_OPEN in text:
        return None
    return text


def _matching_close(text: str, brace: int, limit: int) -> int | None:
    """Position of the ``}`` that closes the ``{`` at ``text[brace]``, looking only before ``limit``.

    The depth count runs in C (``accumulate`` and ``operator.indexOf`` over a signed-byte array), so
    even a megabyte of braces takes milliseconds; a Python loop over the characters would not.
    """
    segment = text[brace:limit]
    steps = array("b", _NOT_BRACE.sub("", segment).encode().translate(_BRACE_STEPS))  # "{" -> 1, "}" -> -1
    try:
        closing = operator.indexOf(accumulate(steps), 0)  # first brace after which the depth is back to 0
    except ValueError:
        return None
    return brace + next(islice(_BRACE.finditer(segment), closing, None)).start()


def _boxed_candidates(text: str):
    """Start positions of box commands, last first.

    Each command's next occurrence is searched only after the previous one was consumed, so every command
    scans the text once in total (re-searching all of them per step would be quadratic when one is absent).
    """
    nearest = {command: text.rfind(command) for command in _BOX_COMMANDS}
    while True:
        command, pos = max(nearest.items(), key=lambda item: item[1])
        if pos < 0:
            return
        yield pos
        nearest[command] = text.rfind(command, 0, pos)


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed 5``) in ``text``.

    A box that is never closed (a truncated response) or empty (an echo of the prompt's "put your answer in
    \\boxed{}") is skipped in favour of the one before it.
    """
    limit = len(text)
    for pos in islice(_boxed_candidates(text), _MAX_BOX_CANDIDATES):
        after = pos + (len("\\boxed") if text.startswith("\\boxed", pos) else len("\\fbox"))
        if after < len(text) and text[after].isalpha():
            continue  # a longer command such as \boxedsymbol, not a box
        brace = after
        while brace < len(text) and text[brace] in " \t":
            brace += 1
        if brace < len(text) and text[brace] == "{":
            close = _matching_close(text, brace, limit)
            if close is None:
                # Every earlier box either closes before this brace or encloses it, and then is unclosed too.
                limit = brace
                continue
            content = text[brace + 1:close].strip()
        elif brace > after:  # "\boxed 5": one token, up to whitespace or the end of the math
            match = re.match(r"[^\s$]+", text[brace:brace + 1000])
            content = match.group(0).rstrip(".") if match else ""
        else:
            continue
        if content:
            return content
    return None


def _phrase_answer(text: str) -> str | None:
    """The answer after the last "final answer is" / "Final Answer:" / "answer is" phrase, or None."""
    lowered = text.lower()
    best_pos, best_phrase = -1, ""
    for phrase in _ANSWER_PHRASES:
        pos = lowered.rfind(phrase)
        if pos >= 0 and pos + len(phrase) > best_pos + len(best_phrase):
            best_pos, best_phrase = pos, phrase
    if best_pos < 0:
        return None
    rest = text[best_pos + len(best_phrase):best_pos + len(best_phrase) + 2000].lstrip(" \t:")
    rest = _FILLER.sub("", rest.split("\n", 1)[0].strip())
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(opener):
            end = rest.find(closer, len(opener))
            rest = rest[len(opener):end if end >= 0 else len(rest)]
            break
    else:
        sentence_end = re.search(r"\.\s", rest)  # "5. I hope it is correct." but not "3.5"
        if sentence_end:
            rest = rest[:sentence_end.start()]
    answer = rest.strip().rstrip(".$ ").strip()
    return answer or None


def _last_line_number(text: str) -> str | None:
    """The last number of the response's closing statement (thousands separators removed), or None.

    Human graders accept an unboxed conclusion such as "so 196 has 9 divisors." even when a sign-off like
    "I think that's the answer." follows, so the last two non-empty lines are read, the later one first.
    Earlier lines are not, so numbers mentioned mid-solution never count, and a line that stops on an
    operator or an open bracket is a response cut off mid-formula: no answer.
    """
    lines = [ln.strip() for ln in text[-_LAST_LINE_CHARS:].splitlines() if ln.strip()]
    if not lines or lines[-1][-1] in _DANGLING:
        return None
    for line in reversed(lines[-2:]):
        numbers = _NUMBER.findall(line)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def extract_answer(text: str) -> str | None:
    """The final answer of a model response, or None when it gives none.

    The last complete box in the answer part (see ``strip_thinking``), else the last "the final answer is X"
    style phrase, else the last number of the last line. ``None`` for a truncated thought or a response
    with none of these.
    """
    visible = strip_thinking(text)
    if visible is None:
        return None
    return last_boxed(visible) or _phrase_answer(visible) or _last_line_number(visible)
