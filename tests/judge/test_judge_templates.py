"""The paper's judge prompts render exactly, and model text with braces passes through untouched."""

import pytest

from libra.judge import FIELDS, list_templates, render, template_fields

POINTWISE_EXPECTED_TAIL = """\
After providing your explanation, you must output only one of the following choices as your final verdict with a label:

1. The correctness score is 4: [[score=4]]
2. The correctness score is 3: [[score=3]]
3. The correctness score is 2: [[score=2]]
4. The correctness score is 1: [[score=1]]
5. The correctness score is 0: [[score=0]]

Example output: \u201dMy final verdict is that the correctness score is 2: [[score=2]]\u201d.

<|User Prompt|>
What is 1+1?

<|The Start of the AI Assistant\u2019s Response|>
2
<|The End of the AI Assistant\u2019s Response|>"""


def test_list_templates():
    assert list_templates() == ["pairwise", "pointwise", "verification"]


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("pointwise", {"question", "response"}),
        ("pairwise", {"question", "response_a", "response_b"}),
        ("verification", {"question", "response", "reference"}),
    ],
)
def test_builtin_fields(name, fields):
    assert template_fields(name) == fields


def test_pointwise_renders_the_paper_prompt():
    prompt = render("pointwise", question="What is 1+1?", response="2")
    assert prompt.startswith(
        "Please act as an impartial judge and evaluate the correctness of the response provided by an AI "
        "assistant to the user prompt displayed below."
    )
    for phrase in (
        "Here is a detailed answer rating guide for Correctness\n\u2022 4 \u2013 The response is completely correct",
        "\u2022 0 \u2013 The response is completely incorrect.",
        "Begin your evaluation by generating your own answer to the prompt. You must provide your answer "
        "before judging any response.",
    ):
        assert phrase in prompt
    assert prompt.endswith(POINTWISE_EXPECTED_TAIL)
    assert "Source:" not in prompt and "---" not in prompt


@pytest.mark.parametrize(
    ("name", "fields", "phrases"),
    [
        (
            "pairwise",
            {"question": "Q?", "response_a": "first", "response_b": "second"},
            [
                "5. Assistant B is significantly better: [[B>>A]\n",  # one bracket short, as printed
                "<||User Prompt|>\nQ?\n\n\n<|The Start of Assistant A\u2019s Answer|>\nfirst\n",
                "<|The Start of Assistant B\u2019s Answer|>\nsecond\n\n<|The End of Assistant B\u2019s Answer|>",
            ],
        ),
        (
            "verification",
            {"question": "Q?", "response": "x = 12", "reference": "12"},
            [
                "[[Correct]] or [[Wrong]]",
                "<|The Start of the AI Assistant\u015b Response|>\nx = 12\n",
                "<|The Start of the Reference Answer>\n12\n<|The End of the Reference Answer|>",
            ],
        ),
    ],
)
def test_other_builtins_render_the_paper_prompts(name, fields, phrases):
    prompt = render(name, **fields)
    assert prompt.startswith("Please act as an impartial judge")
    for phrase in phrases:
        assert phrase in prompt


def test_braces_in_values_are_not_substituted():
    tricky = r"\frac{1}{2} {question} {response} {{response}} {"
    prompt = render("pointwise", question=tricky, response="{question}")
    assert f"<|User Prompt|>\n{tricky}\n" in prompt
    assert "Response|>\n{question}\n<|The End" in prompt


def _write(tmp_path, text):
    path = tmp_path / "mine.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_user_template_header_and_literal_braces(tmp_path):
    path = _write(tmp_path, '---\nMy judge, v2\n---\nJSON {"ok": 1} {1} { x } {{question}}\n{question}|{response}\n')
    assert template_fields(path) == {"question", "response"}
    assert render(path, question="Q", response="R") == 'JSON {"ok": 1} {1} { x } {question}\nQ|R'


def test_user_template_without_header(tmp_path):
    assert render(_write(tmp_path, "Grade: {response}"), response="7") == "Grade: 7"


@pytest.mark.parametrize(
    ("template", "fields", "message"),
    [
        ("pointwise", {"question": "Q"}, r"'pointwise' needs field\(s\) \['response'\]"),
        (
            "pointwise",
            {"question": "Q", "response": "R", "reference": "X"},
            r"no placeholder for field\(s\) \['reference'\]",
        ),
        ("pointwise", {"question": "Q", "answer": "R"}, r"needs field\(s\) \['response'\]"),
        ("nonexistent-template", {}, "unknown template 'nonexistent-template'"),
    ],
)
def test_render_errors(template, fields, message):
    with pytest.raises(ValueError, match=message):
        render(template, **fields)


def test_unknown_placeholder_is_named(tmp_path):
    path = _write(tmp_path, r"\boxed{answer} {question}")
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \['\{answer\}'\]"):
        render(path, question="Q")


def test_unclosed_header(tmp_path):
    with pytest.raises(ValueError, match="never closed"):
        template_fields(_write(tmp_path, "---\nheader\n{question}"))


def test_non_string_value():
    with pytest.raises(TypeError, match="'response'"):
        render("pointwise", question="Q", response=None)


def test_fields_vocabulary_covers_builtins():
    assert set().union(*(template_fields(n) for n in list_templates())) == FIELDS
