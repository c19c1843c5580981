"""Final-answer extraction from a model response, and chain-of-thought stripping.

Everything here is a linear scan (``str.rfind``, one brace-matching pass, and regexes without nested
repetition over at most the closing kilobyte), never a backtracking regex over the whole text: responses
come from models and can be megabytes of repeated or unbalanced braces, and the verifier's time bound (see
``bounded``) only covers the symbolic step, so extraction itself must never be the slow part.

An answer is always taken whole (a formula with every value it lists, a number with the expression it
ends), never a piece of one: the closing statement "so $x = \\frac{3}{4}$" answers 3/4, not 4, and
"$x = 2$ or $x = -3$" answers both values, not -3. Where no whole answer is found, the reason is given.
"""

from __future__ import annotations

import operator
import re
from array import array
from dataclasses import dataclass
from itertools import accumulate, islice
from typing import Iterator

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_SKY_THOUGHT_OPEN, _SKY_THOUGHT_CLOSE = "<|begin_of_thought|>", "<|end_of_thought|>"
_SKY_SOLUTION_OPEN, _SKY_SOLUTION_CLOSE = "<|begin_of_solution|>", "<|end_of_solution|>"

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Boxes examined from the end before giving up: a real response never has this many broken ones in a row.
_MAX_BOX_CANDIDATES = 64
_BRACE = re.compile(r"[{}]")
_NOT_BRACE = re.compile(r"[^{}]+")
_BRACE_STEPS = bytes.maketrans(b"{}", b"\x01\xff")  # read as signed bytes: +1, -1
# Boxes joined into one answer at most, and the most text between two of them ("$, $").
_MAX_JOINED_BOXES = 10
_MAX_JOINER_CHARS = 40

# Fallback phrases when there is no box, most specific first; the LAST occurrence in the text wins, and on a
# tie in position (one phrase containing another) the more specific phrase wins.
_ANSWER_PHRASES = ("the final answer is", "final answer:", "answer is")
# Words models put between "the answer is" and the answer ("the answer is indeed 6", "is a total of 34 hours").
_FILLER = re.compile(r"^(?:(?:indeed|simply|just|definitely|clearly|therefore|thus|actually|then|a total of)\b[\s,]*)+",
                     re.I)
# A comma that starts a clause after the answer ("5, which is odd"), not the next value of a list ("1, 2, and 3").
_CLAUSE = re.compile(r",\s+(?!(?:and|or)\b)[a-zA-Z]{2,}")

# Last resort, in the response's closing lines only: a formula or a number ("... so 196 has 9 divisors.").
_LAST_LINE_CHARS = 1000
_DANGLING = set("+-*/=^_{([,\\&")
# What may separate the values of one answer: "$2$ and $-3$", "\boxed{1}, \boxed{2}", "$x=1$ or $x=2$", and math
# delimiters with them: "\(\boxed{-1}\) and \(\boxed{-9}\)", two displayed boxes "\]\nand\n\[". Each repeated piece
# starts with its own character (a backslash only in the delimiter), so the match is linear.
_DELIMITER = r"\\[()\[\]]"
_JOINER = re.compile(rf"^(?:[\s$,;&]|{_DELIMITER})*(?:(?:and|or|\\q?quad|\\text\{{\s*(?:and|or)\s*\}})"
                     rf"(?:[\s$,;]|{_DELIMITER})*)?$")
_MATH_DELIMITER = re.compile(r"(?<!\\)(?:\$\$|\$|\\\[|\\\]|\\\(|\\\))")
_MATH_CLOSERS = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")
_TOKEN = re.compile(r"\S+")
_DIGIT = re.compile(r"\d")
_TRAILING, _LEADING = ".,;:!?*\"'", "*\"'"
# Tokens walked back over to find the opening bracket of a closing number such as "(5, 4)".
_MAX_BRACKET_TOKENS = 12
_OPERATORS = {"+", "-", "*", "/", "^", "×", "÷", "\\times", "\\cdot", "\\div"}
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
# Numbers spelt as words in a closing sentence ("one" is left out: it is as often a pronoun), and the words
# after which such a number is what the sentence states ("there are three ways", "so, three digits").
_NUMBER_WORDS = set("zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                    "sixteen seventeen eighteen nineteen twenty thirty forty fifty hundred thousand".split())
_STATING_WORDS = set("is are was were be has have had makes gives equals get gets got exactly only just so thus "
                     "therefore hence answer".split())
# A last line ending on one of these words was cut off mid-sentence ("413 (base 5) is"): no answer.
_CONTINUING_WORDS = set("is are was were be the a an of to and or by for with that then as would will can from "
                        "in on at into which we if".split())
# A math segment is an answer only if it holds a number or a command: "$k$" or "$AB$" only name things.
_ANSWER_LIKE = re.compile(r"[\d\\]")
# "(mod 1000)" after a closing number is the modulus, not the answer.
_MODULUS = re.compile(r"\(\s*mod\s+[^()]{1,20}\)")
# A closing line in markdown bold from its start: "**Answer: \( \frac{13}{2} \)**", "**Final Answer:** 17". The
# class excludes "*", so the match is linear.
_BOLD_START = re.compile(r"^\*\*([^*]+)\*\*")
# "a total of 34 hours": the number after it is what the sentence states, whatever other numbers it names.
_TOTAL = re.compile(r"\ba total of\b", re.I)
_PLAIN_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")

Span = tuple[int, int, int, int]  # a math segment: start, content start, content end, end


@dataclass(frozen=True)
class Extraction:
    """The final answer of a response (``answer``; None when it has none) and ``source``: where it was found
    ("box", "2 boxes", "answer phrase", "closing math", "closing number", "closing total") or, with no answer,
    why not ("truncated thought", "cut off mid-formula", "cut off mid-sentence", "answer stated in words",
    "no whole answer", "no final answer")."""

    answer: str | None
    source: str


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


def _boxes(text: str) -> Iterator[tuple[str, int, int]]:
    """``(content, start, end)`` of each complete, non-empty ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed 5``),
    last first.

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
            content, end = text[brace + 1:close].strip(), close + 1
        elif brace > after:  # "\boxed 5": one token, up to whitespace or the end of the math
            match = re.match(r"[^\s$]+", text[brace:brace + 1000])
            content, end = (match.group(0).rstrip("."), brace + match.end()) if match else ("", brace)
        else:
            continue
        if content:
            yield content, pos, end


def _boxed_answer(text: str) -> Extraction | None:
    """The last box, with the boxes just before it when only "and" / "," / "or" separate them: ``\\boxed{2}
    and \\boxed{-3}`` is one answer with two values, not the answer -3."""
    boxes = _boxes(text)
    run = list(islice(boxes, 1))
    if not run:
        return None
    for content, start, end in islice(boxes, _MAX_JOINED_BOXES - 1):
        if not 0 <= run[0][1] - end <= _MAX_JOINER_CHARS or not _JOINER.match(text[end:run[0][1]]):
            break
        run.insert(0, (content, start, end))
    if len(run) == 1:
        return Extraction(run[0][0], "box")
    return Extraction(", ".join(content for content, _, _ in run), f"{len(run)} boxes")


def _math_spans(text: str) -> list[Span]:
    """Each complete ``$…$``, ``$$…$$``, ``\\(…\\)``, ``\\[…\\]`` segment of ``text``, in order."""
    spans, opener = [], None
    for match in _MATH_DELIMITER.finditer(text):
        token = match.group()
        if opener is None:
            if token in _MATH_CLOSERS:
                opener = match
        elif token == _MATH_CLOSERS[opener.group()]:
            spans.append((opener.start(), opener.end(), match.start(), match.end()))
            opener = None
    return spans


def _whole(expression: str) -> bool:
    """Whether ``expression`` is a complete formula: balanced brackets, not stopping on an operator."""
    depth = 0
    for char in expression:
        depth += (char in "([{") - (char in ")]}")
        if depth < 0:
            return False
    return depth == 0 and bool(expression) and expression[-1] not in _DANGLING


def _math_run(text: str, spans: list[Span], *, last: bool) -> str | None:
    """The contents of a run of math segments separated only by "and" / "," / "or", joined by ", ".

    The run ends at the last segment (``last``) or starts at the first; None when a segment is unfinished.
    """
    order = spans[::-1] if last else spans
    run = [order[0]]
    for span in order[1:]:
        before, after = (span, run[0]) if last else (run[-1], span)
        if not _JOINER.match(text[before[3]:after[0]]):
            break
        if last:
            run.insert(0, span)
        else:
            run.append(span)
    contents = [text[span[1]:span[2]].strip().rstrip(".,;").strip() for span in run]
    return ", ".join(contents) if all(_whole(content) for content in contents) else None


def _phrase_answer(text: str) -> Extraction | None:
    """The answer after the last "final answer is" / "Final Answer:" / "answer is" phrase, or None."""
    lowered = text.lower()
    best_pos, best_phrase = -1, ""
    for phrase in _ANSWER_PHRASES:
        pos = lowered.rfind(phrase)
        if pos >= 0 and pos + len(phrase) > best_pos + len(best_phrase):
            best_pos, best_phrase = pos, phrase
    if best_pos < 0:
        return None
    # "*" too: the phrase is often in markdown bold ("**Final Answer:** 17", "Final Answer: **17**")
    rest = text[best_pos + len(best_phrase):best_pos + len(best_phrase) + 2000].lstrip(" \t:*")
    rest = _FILLER.sub("", rest.split("\n", 1)[0].strip())
    spans = _math_spans(rest)
    if spans and spans[0][0] == 0:  # "the answer is $1$, $2$ and $3$": every value, not the first
        answer = _math_run(rest, spans, last=False)
        return Extraction(answer, "answer phrase") if answer else None
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if rest.startswith(opener):
            end = rest.find(closer, len(opener))
            rest = rest[len(opener):end if end >= 0 else len(rest)]
            break
    else:
        sentence_end = re.search(r"\.\s", rest)  # "5. I hope it is correct." but not "3.5"
        if sentence_end:
            rest = rest[:sentence_end.start()]
        clause = _CLAUSE.search(rest)  # "5, since 2 + 3 = 5": the answer is 5, not a list
        if clause:
            rest = rest[:clause.start()]
    answer = rest.strip().rstrip(".$* ").strip()
    return Extraction(answer, "answer phrase") if answer else None


def _flatten_math(text: str, spans: list[Span]) -> str:
    """``text`` with the line breaks inside math segments made spaces: a displayed formula is one line."""
    pieces, done = [], 0
    for start, _, _, end in spans:
        pieces += [text[done:start], text[start:end].replace("\n", " ")]
        done = end
    return "".join(pieces + [text[done:]])


def _bracket_depth(text: str) -> int:
    return sum(char in "([{" for char in text) - sum(char in ")]}" for char in text)


def _prose_number(tokens: list[str]) -> str | None:
    """The last number of a sentence's prose, with the operators, numbers and brackets that make it one
    expression (``256 - 1``, ``(5, 4)``, ``-\\frac{3}{4}`` written without math delimiters), or None when that
    expression is unfinished."""
    last = max(i for i, token in enumerate(tokens) if _DIGIT.search(token))
    parts = [tokens[last].rstrip(_TRAILING).lstrip(_LEADING)]
    i = last - 1
    while _bracket_depth(" ".join(parts)) < 0 and i >= 0 and last - i <= _MAX_BRACKET_TOKENS:
        parts.insert(0, tokens[i].lstrip(_LEADING))
        i -= 1
    while i >= 0 and tokens[i] in _OPERATORS:
        if i >= 1 and _DIGIT.search(tokens[i - 1]) and tokens[i - 1][-1] not in _TRAILING:
            parts[:0] = [tokens[i - 1].lstrip(_LEADING), tokens[i]]
            i -= 2
            continue
        if tokens[i] == "-":
            parts.insert(0, "-")
        break
    expression = " ".join(parts)
    if not _whole(expression):
        return None
    return expression.replace(",", "") if _THOUSANDS.match(expression) else expression


def _stated_in_words(words: list[str]) -> bool:
    """Whether a sentence states a number in words ("there are three ways", "so, three common digits")."""
    return any(word in _NUMBER_WORDS and i > 0 and words[i - 1] in _STATING_WORDS for i, word in enumerate(words))


def _total_answer(sentence: str, prose: str, spans: list[Span]) -> Extraction | None:
    """The number a sentence states as "a total of N" (``prose`` is ``sentence`` with its math blanked out), or
    None.

    "Jim spends a total of 34 hours on his hobbies in 2 weeks" answers 34, not the last number 2. Only where
    N is a plain number (or a formula) right after the phrase and the rest of the sentence just qualifies it:
    "a total of 17 * 2 = 34" or "a total of 34 hours, so each gets 17" go on to another value, and are left
    to the general rule.
    """
    phrases = list(_TOTAL.finditer(prose))  # one sentence of a closing line: at most a kilobyte
    if not phrases:
        return None
    at = phrases[-1].end()
    while at < len(sentence) and sentence[at].isspace():
        at += 1
    span = next((span for span in spans if span[0] == at), None)
    if span is not None:
        value, rest = sentence[span[1]:span[2]].strip(), prose[span[3]:]
        if not (_ANSWER_LIKE.search(value) and _whole(value)):
            return None
    else:
        token = _TOKEN.match(prose, at)
        value = token.group().rstrip(_TRAILING).lstrip(_LEADING) if token else ""
        if not _PLAIN_NUMBER.match(value):
            return None
        value, rest = value.replace(",", ""), prose[token.end():]
    for token in rest.split():
        word = token.strip(_TRAILING + _LEADING + "()").casefold()
        if word in _STATING_WORDS or token in _OPERATORS or "=" in token:
            return None
    return Extraction(value, "closing total")


def _sentence_answer(sentence: str, spans: list[Span]) -> Extraction | None:
    """The answer one sentence states (its math ``spans`` given), or None when it has no number or formula.

    The number it states as "a total of N" (see ``_total_answer``); else the last formula (with the formulas
    joined to it by "and" / ",") or the last number, whichever comes later, taken whole; a formula that only
    names something (``$k$``, ``$AB$``) is no answer. A number in a sentence that states a number in words
    ("there are three ways to choose 2") is no answer: which of the two is meant cannot be told.
    """
    prose = sentence
    for start, _, _, end in spans:
        prose = prose[:start] + " " * (end - start) + prose[end:]
    prose = _MODULUS.sub(lambda m: " " * len(m.group()), prose)
    total = _total_answer(sentence, prose, spans)
    if total is not None:
        return total
    tokens = list(_TOKEN.finditer(prose))
    words = [token.group().strip(_TRAILING + _LEADING + "()").casefold() for token in tokens]
    if _stated_in_words(words):
        return Extraction(None, "answer stated in words")
    answers = [span for span in spans if _ANSWER_LIKE.search(sentence[span[1]:span[2]])]
    number_at = max((token.start() for token in tokens if _DIGIT.search(token.group())), default=-1)
    math_at = answers[-1][0] if answers else -1
    if number_at < 0 and math_at < 0:
        return None
    if math_at > number_at:
        answer = _math_run(sentence, answers, last=True)
        return Extraction(answer, "closing math") if answer else Extraction(None, "cut off mid-formula")
    answer = _prose_number([token.group() for token in tokens])
    return Extraction(answer, "closing number") if answer else Extraction(None, "no whole answer")


def _line_answer(line: str) -> Extraction | None:
    """The answer of the last sentence of ``line`` that has a number or a formula, or None."""
    spans = _math_spans(line)
    ends = [m.end() for m in _SENTENCE_END.finditer(line) if not any(a <= m.start() < d for a, _, _, d in spans)]
    for start, end in reversed(list(zip([0] + ends, ends + [len(line)]))):
        inside = [(a - start, b - start, c - start, d - start) for a, b, c, d in spans if start <= a and d <= end]
        found = _sentence_answer(line[start:end], inside)
        if found is not None:
            return found
    return None


def _closing_answer(text: str) -> Extraction:
    """The answer of the response's closing statement, taken whole, or why there is none.

    Human graders accept an unboxed conclusion such as "so 196 has 9 divisors." or "Therefore the value is
    \\( \\frac{3\\sqrt{3}}{4} \\)." even when a sign-off like "I think that's the answer." follows, so the last
    two non-empty lines are read (a displayed formula counts as one line), the later one first. Earlier
    lines are not, so numbers mentioned mid-solution never count, and a line that stops on an operator or
    an open bracket is a response cut off mid-formula: no answer. A line in bold from its start ("**Answer:
    \\( \\frac{13}{2} \\)**") is read without the markers, so its closing "**" is no dangling operator.
    """
    tail = text[-_LAST_LINE_CHARS:]
    if len(text) > _LAST_LINE_CHARS:  # start at a line, so the tail does not begin inside a formula
        tail = tail[tail.find("\n") + 1:]
    lines = [_BOLD_START.sub(r"\1", ln.strip()).strip() for ln in _flatten_math(tail, _math_spans(tail)).splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return Extraction(None, "no final answer")
    if lines[-1][-1] in _DANGLING:
        return Extraction(None, "cut off mid-formula")
    if lines[-1].rsplit(None, 1)[-1].casefold() in _CONTINUING_WORDS:
        return Extraction(None, "cut off mid-sentence")
    for line in reversed(lines[-2:]):
        found = _line_answer(line)
        if found is not None:
            return found
    return Extraction(None, "no final answer")


def extract(text: str) -> Extraction:
    """The final answer of a model response and where it was found, or why there is none.

    The last complete box (with the boxes joined to it) in the answer part (see ``strip_thinking``), else the
    last "the final answer is X" style phrase, else the closing statement's formula or number, each taken
    as a whole expression, never a piece of one.
    """
    visible = strip_thinking(text)
    if visible is None:
        return Extraction(None, "truncated thought")
    return _boxed_answer(visible) or _phrase_answer(visible) or _closing_answer(visible)


def extract_answer(text: str) -> str | None:
    """The final answer of a model response (see ``extract``), or None when it gives none."""
    return extract(text).answer
