"""Grading: extract the final answer from a solution and compare it with the gold answer.

:func:`extract_answer` reads the answer a model wrote (``\\boxed{...}``, ``#### N``,
``Answer: ...`` or, failing those, the last number). :func:`normalize_answer` gives the
canonical form used to count votes. :func:`is_correct` compares an answer with a gold
answer: plain numbers are compared numerically (fast path), anything else with
`math-verify <https://github.com/huggingface/Math-Verify>`_, with a normalised string
comparison as the last resort. All three are safe to call from worker threads.
"""

from __future__ import annotations

import math
import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = ["extract_answer", "normalize_answer", "is_correct", "parse_number"]

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*")
_HASH_RE = re.compile(r"####\s*(.+)")
_ANSWER_RE = re.compile(
    r"(?:final\s+)?answer\s*(?:is\s*)?[:：]\s*|answer\s+is\s+(?=[-+−$\\\d.])", re.IGNORECASE
)
# A number: thousands-separated or plain, optional decimals, optional /denominator.
_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|[-+−]?\.\d+"
_NUMBER_RE = re.compile(_NUM)
_LEADING_NUMBER_RE = re.compile(rf"^\s*\$?\s*({_NUM})")
_PLAIN_NUMBER_RE = re.compile(
    r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?$|^[-+]?\.\d+(?:[eE][-+]?\d+)?$"
)
_LATEX_FRAC_RE = re.compile(r"^([-+]?)\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}$")
_LATEX_WRAPPERS = (
    (re.compile(r"\\text\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\mathrm\s*\{([^{}]*)\}"), r"\1"),
    (re.compile(r"\\(?:left|right|displaystyle|!|,|;|:|\s)"), ""),
    (re.compile(r"\^\s*\{?\\circ\}?"), ""),
    (re.compile(r"\\%|%"), ""),
    (re.compile(r"\\\$"), ""),
)


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at ``text[start]``, and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i], i + 1
    return None  # unbalanced


def _last_boxed(text: str) -> str | None:
    for match in reversed(list(_BOXED_RE.finditer(text))):
        end = match.end()
        group = _braced(text, end)
        if group is not None:
            return group[0]
        # \boxed 5 (no braces): up to the next space or $
        bare = re.match(r"([^\s$]+)", text[end:])
        if bare and match.group(0).endswith(" "):
            return bare.group(1)
    return None


def _clean(answer: str) -> str | None:
    """Tidy an extracted answer: markup, surrounding ``$``, trailing period, units."""
    s = answer.strip()
    s = s.replace("**", "").replace("−", "-").strip()
    # Surrounding math delimiters.
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) > len(left) + len(right) - 1:
            s = s[len(left):len(s) - len(right)].strip()
    s = s.rstrip(" .;").strip()
    if not s:
        return None
    inner = _last_boxed(s)
    if inner is not None:
        s = inner.strip()
    # "x = 5" -> "5" when the right side is a simple expression.
    if "=" in s and not s.startswith("\\") and "\\begin" not in s:
        right = s.rsplit("=", 1)[1].strip()
        if right:
            s = right
    # A number followed by words (units, currency names): keep the number.
    if not s.startswith("\\"):
        lead = _LEADING_NUMBER_RE.match(s)
        if lead:
            rest = s[lead.end():].strip()
            if not rest or re.match(r"^[A-Za-z%°][A-Za-z%°\s.,'’/-]*$", rest):
                s = lead.group(1)
    s = s.strip().lstrip("$").strip()
    return s or None


def extract_answer(text) -> str | None:
    """Extract the final answer from a model's solution.

    Looks, in this order, for the last ``\\boxed{...}`` (nested braces allowed), the last
    ``#### N`` line, the last ``Answer: ...`` line, and otherwise the last number in the text.
    Surrounding ``$``, trailing periods, markdown bold and trailing unit words
    (``12 apples``) are removed; thousands separators are kept here and dropped by
    :func:`normalize_answer`.

    Parameters
    ----------
    text : str or None
        The generated solution.

    Returns
    -------
    str or None
        The answer, or None when the text holds none.

    Examples
    --------
    >>> extract_answer("so the area is \\\\boxed{\\\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("3 + 4 = 7\\nAnswer: 7 apples.")
    '7'
    >>> extract_answer("She has 12 apples and eats 5, so 7 are left")
    '7'
    """
    if not isinstance(text, str) or not text.strip():
        return None
    boxed = _last_boxed(text)
    if boxed is not None:
        return _clean(boxed)
    hashes = list(_HASH_RE.finditer(text))
    if hashes:
        got = _clean(hashes[-1].group(1).splitlines()[0])
        if got is not None:
            return got
    answers = list(_ANSWER_RE.finditer(text))
    if answers:
        rest = text[answers[-1].end():]
        line = next((ln for ln in rest.splitlines() if ln.strip()), "")
        got = _clean(line)
        if got is not None:
            return got
    numbers = _NUMBER_RE.findall(text)
    if numbers:
        return _clean(numbers[-1])
    return None


def parse_number(value) -> Fraction | None:
    """Exact value of a plain number (``12``, ``-3.50``, ``1,234``, ``3/4``, ``\\frac{3}{4}``).

    Returns None for anything else (expressions, text, LaTeX beyond a simple fraction).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) else None
    s = str(value).strip().replace("−", "-").replace(" ", "")
    s = s.strip("$").rstrip(".")
    if s.startswith("\\$"):
        s = s[2:]
    if not s:
        return None
    frac = _LATEX_FRAC_RE.match(s)
    if frac:
        sign, num, den = frac.groups()
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return -value if sign == "-" else value
    if "/" in s:
        num, _, den = s.partition("/")
        a, b = parse_number(num), parse_number(den)
        if a is None or b is None or b == 0 or "/" in den:
            return None
        return a / b
    if not _PLAIN_NUMBER_RE.match(s):
        return None
    try:
        return Fraction(Decimal(s.replace(",", "")))
    except (InvalidOperation, ValueError):
        return None


def _format_number(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".12g")


def normalize_answer(answer) -> str | None:
    """Canonical form of an answer, for counting votes.

    Numbers become one canonical string (``"12"`` for ``12``, ``12.0``, ``12.00``,
    ``1,2`` is not a number and stays text, ``"0.5"`` for ``1/2``, ``\\frac{1}{2}`` and
    ``.5``); other answers lose whitespace, ``\\text{}``/``\\left``/``\\right`` wrappers,
    degree and percent signs, and are lower-cased.

    Parameters
    ----------
    answer : str or None

    Returns
    -------
    str or None
        None when ``answer`` is None or empty.
    """
    if answer is None:
        return None
    s = str(answer).strip()
    if not s:
        return None
    number = parse_number(s)
    if number is not None:
        return _format_number(number)
    t = s
    for pattern, repl in _LATEX_WRAPPERS:
        t = pattern.sub(repl, t)
    t = t.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    number = parse_number(t)
    if number is not None:
        return _format_number(number)
    t = re.sub(r"\s+", "", t).strip("$").rstrip(".").lower()
    return t or None


def _wrap_latex(text: str) -> str:
    s = text.strip()
    if "$" in s or "\\(" in s or "\\[" in s or "\\boxed" in s:
        return s
    return f"${s}$"


def _math_verify(answer: str, gold: str) -> bool | None:
    """math-verify's verdict, or None when it cannot parse one side."""
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a dependency
        return None
    in_main = threading.current_thread() is threading.main_thread()
    # math-verify times out with signal.alarm, which only works in the main thread.
    timeouts = {} if in_main else {"parsing_timeout": None}
    verify_timeouts = {} if in_main else {"timeout_seconds": None}
    try:
        gold_parsed = parse(_wrap_latex(gold), **timeouts)
        answer_parsed = parse(_wrap_latex(answer), **timeouts)
        if not gold_parsed or not answer_parsed:
            return None
        return bool(verify(gold_parsed, answer_parsed, **verify_timeouts))
    except Exception:  # math-verify raises on odd input in rare cases
        return None


def is_correct(answer, gold, *, rel_tol: float = 1e-6) -> bool:
    """Whether ``answer`` matches the gold answer.

    Plain numbers on both sides are compared numerically (relative tolerance
    ``rel_tol``, absolute 1e-9) without math-verify. Otherwise both sides are parsed and
    compared with math-verify (gold LaTeX is wrapped as ``$...$``); when math-verify cannot
    parse a side, the normalised strings (:func:`normalize_answer`) are compared.

    Parameters
    ----------
    answer : str, number or None
        The extracted answer; None is never correct.
    gold : str or number
        The reference answer.
    rel_tol : float, default=1e-6
        Relative tolerance of the numeric comparison.

    Returns
    -------
    bool

    Examples
    --------
    >>> is_correct("12.0", "12")
    True
    >>> is_correct("\\\\frac{1}{2}", "0.5")
    True
    >>> is_correct(None, "3")
    False
    """
    if answer is None or gold is None:
        return False
    if isinstance(answer, float) and math.isnan(answer):
        return False
    a_num, g_num = parse_number(answer), parse_number(gold)
    if a_num is not None and g_num is not None:
        return math.isclose(float(a_num), float(g_num), rel_tol=rel_tol, abs_tol=1e-9)
    a_str, g_str = str(answer).strip(), str(gold).strip()
    if not a_str or not g_str:
        return False
    verdict = _math_verify(a_str, g_str)
    if verdict:
        return True
    a_norm, g_norm = normalize_answer(a_str), normalize_answer(g_str)
    if a_norm is not None and a_norm == g_norm:
        return True
    if verdict is None:
        a_n, g_n = parse_number(a_norm), parse_number(g_norm)
        if a_n is not None and g_n is not None:
            return math.isclose(float(a_n), float(g_n), rel_tol=rel_tol, abs_tol=1e-9)
    return False
