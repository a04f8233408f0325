"""Answer extraction, normalisation and grading (real math-verify, no mocks)."""

from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import pytest

from ttcrouter.grading import extract_answer, is_correct, normalize_answer, parse_number


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The result is \\boxed{42}.", "42"),
        ("first \\boxed{1} then \\boxed{\\frac{3}{\\sqrt{2}}}", "\\frac{3}{\\sqrt{2}}"),
        ("nested \\boxed{\\{1, 2\\}} end", "\\{1, 2\\}"),
        ("work...\n#### 1,234", "1,234"),
        ("Answer: 5\nlater text 7", "5"),
        ("Answer: 3\nno wait. Answer: 8.", "8"),
        ("**Answer:** 17", "17"),
        ("The final answer is: $12.50.", "12.50"),
        ("So the answer is 8.\nThe answer can be given as: eight", "8"),
        ("The answer is the sum of 3 and 4, so 7", "7"),
        ("Answer: 7 apples.", "7"),
        ("answer: x = 4", "4"),
        ("Answer:\n  9", "9"),
        ("She has 12 apples and eats 5, so 7 are left", "7"),
        ("so it is -3.", "-3"),
        ("half of it: 3/4", "3/4"),
        ("no numbers here", None),
        ("", None),
        (None, None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_boxed_beats_answer_line_and_numbers():
    assert extract_answer("Answer: 3\n\\boxed{5} and 9 more") == "5"


def test_unbalanced_boxed_falls_back():
    assert extract_answer("\\boxed{12 and then Answer: 4") == "4"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("12", "12"), ("12.0", "12"), ("12.00", "12"), ("+12", "12"), ("1,234", "1234"),
        ("0.5", "0.5"), (".5", "0.5"), ("1/2", "0.5"), ("\\frac{1}{2}", "0.5"),
        ("\\dfrac{6}{3}", "2"), ("-4", "-4"), ("1,2", "1,2"), ("\\text{ Yes }", "yes"),
        ("90^\\circ", "90"), ("x + 1", "x+1"), (None, None), ("  ", None),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_parse_number():
    assert parse_number("3/4") == Fraction(3, 4)
    assert parse_number("1,000.5") == Fraction(2001, 2)
    assert parse_number("1/0") is None
    assert parse_number("x") is None
    assert parse_number(True) is None
    assert parse_number(2.5) == Fraction(5, 2)


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("12", "12", True),
        ("12.0", "12", True),
        ("1,234", "1234", True),
        ("13", "12", False),
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac{1}{2}", "0.5", True),
        ("\\frac{\\sqrt{2}}{2}", "\\sqrt{2}/2", True),
        ("\\sqrt{3}", "\\sqrt{2}", False),
        ("(1, 2)", "(1,2)", True),
        ("\\text{yes}", "yes", True),
        (None, "3", False),
        ("", "3", False),
        (7, "7", True),
        (0.1 + 0.2, "0.3", True),
    ],
)
def test_is_correct(answer, gold, expected):
    assert is_correct(answer, gold) is expected


def test_is_correct_end_to_end_with_extraction():
    text = "We add: 2 + 3 = 5.\nAnswer: \\boxed{\\dfrac{10}{2}}"
    assert is_correct(extract_answer(text), "5")


def test_is_correct_thread_safe():
    """math-verify uses signal.alarm in the main thread; worker threads must not break."""
    cases = [
        ("\\frac{1}{2}", "0.5", True), ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("x^2", "x^{2}", True), ("\\pi", "3", False), ("12", "12.0", True),
        ("(1,2)", "(1, 2)", True),
    ] * 8
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda c: is_correct(c[0], c[1]), cases))
    assert got == [c[2] for c in cases]


@pytest.mark.parametrize("mode, text, answer", [
    # direct: the continuation of the assistant prefix "Answer:", or the answer line or a
    # bare number when a model's direct prompt has no prefix
    ("direct", " 12", "12"),
    ("direct", " -3.", "-3"),
    ("direct", " 1,200", "1200"),
    ("direct", "Answer: 12", "12"),
    ("direct", "12", "12"),
    ("direct", "The answer is 12.", "12"),
    ("direct", "Answer: 1,200", "1200"),
    # cot: steps, then the answer line the cot prompt asks for
    ("cot", "3 + 4 = 7\n7 * 2 = 14\nAnswer: 14", "14"),
    ("cot", "First, 6 times 7 is 42.\nSo the result is 42", "42"),
])
def test_answer_extraction_of_each_prompt_mode(mode, text, answer):
    from ttcrouter.executors.base import DEFAULT_PROMPTS
    from ttcrouter.grading import normalize_answer

    assert "Answer: <number>" in DEFAULT_PROMPTS[mode].system
    assert normalize_answer(extract_answer(text)) == answer
