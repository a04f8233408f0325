"""Query sets: generated arithmetic, GSM-Symbolic problems and JSONL files.

Every loader returns a :class:`pandas.DataFrame` with one row per query and the columns
``query_id`` (unique string), ``query`` (the question text) and ``gold`` (the reference
answer as a string), plus loader-specific extras (``level`` for :func:`arithmetic`,
``source`` for the others). :func:`as_queries` checks any such table.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .validation import check_int

__all__ = [
    "ARITHMETIC_LEVELS",
    "arithmetic",
    "gsm_symbolic",
    "load_jsonl",
    "load_queries",
    "as_queries",
    "DatasetError",
]


class DatasetError(ValueError):
    """A query set is malformed; the message says where and how to fix it."""


# --------------------------------------------------------------------------------------
# arithmetic
# --------------------------------------------------------------------------------------

#: Difficulty levels of :func:`arithmetic`, easiest first, with their share of the default
#: mix. SmolLM2-135M-Instruct (one sample, temperature 0.7) solves one-digit products about
#: half the time, one-digit sums a third of the time, and the rest rarely or never (see
#: docs/collection.md), so the mix leans on the easier levels to make per-query accuracy vary.
ARITHMETIC_LEVELS = {
    "add1": 0.22,     # one-digit a + b
    "mul1": 0.22,     # one-digit a * b
    "add21": 0.10,    # two-digit + one-digit
    "add22": 0.12,    # two-digit + two-digit
    "addsub": 0.10,   # a + b - c (one digit each)
    "word": 0.12,     # short word problem, one operation
    "multi": 0.12,    # multi-step mixed operations
}

_ADD_TEMPLATES = ("What is {a} + {b}?", "Compute {a} + {b}.", "What is {a} plus {b}?",
                  "{a} + {b} = ?", "Add {a} and {b}.", "What is the sum of {a} and {b}?")
_MUL_TEMPLATES = ("What is {a} * {b}?", "Compute {a} x {b}.", "What is {a} times {b}?",
                  "{a} * {b} = ?", "Multiply {a} by {b}.", "What is the product of {a} and {b}?")
_ADDSUB_TEMPLATES = ("What is {a} + {b} - {c}?", "Compute {a} + {b} - {c}.",
                     "{a} + {b} - {c} = ?")
_NAMES = ("Tom", "Anna", "Sam", "Mia", "Ben", "Lily", "Max", "Emma", "Leo", "Zoe")
_ITEMS = ("apples", "pencils", "marbles", "cookies", "stickers", "books", "coins", "cards")


def _gen_add1(rng):
    a, b = int(rng.integers(0, 10)), int(rng.integers(1, 10))
    return _ADD_TEMPLATES[int(rng.integers(len(_ADD_TEMPLATES)))].format(a=a, b=b), a + b


def _gen_mul1(rng):
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    return _MUL_TEMPLATES[int(rng.integers(len(_MUL_TEMPLATES)))].format(a=a, b=b), a * b


def _gen_add21(rng):
    a, b = int(rng.integers(10, 100)), int(rng.integers(1, 10))
    if rng.random() < 0.5:
        a, b = b, a
    return _ADD_TEMPLATES[int(rng.integers(len(_ADD_TEMPLATES)))].format(a=a, b=b), a + b


def _gen_add22(rng):
    a, b = int(rng.integers(10, 100)), int(rng.integers(10, 100))
    return _ADD_TEMPLATES[int(rng.integers(len(_ADD_TEMPLATES)))].format(a=a, b=b), a + b


def _gen_addsub(rng):
    a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    c = int(rng.integers(1, a + b + 1))
    text = _ADDSUB_TEMPLATES[int(rng.integers(len(_ADDSUB_TEMPLATES)))]
    return text.format(a=a, b=b, c=c), a + b - c


def _gen_word(rng):
    name = _NAMES[int(rng.integers(len(_NAMES)))]
    item = _ITEMS[int(rng.integers(len(_ITEMS)))]
    kind = int(rng.integers(4))
    if kind == 0:
        a, b = int(rng.integers(2, 10)), int(rng.integers(2, 10))
        return (f"{name} has {a} {item}. A friend gives {name} {b} more. "
                f"How many {item} does {name} have now?"), a + b
    if kind == 1:
        a = int(rng.integers(5, 20))
        b = int(rng.integers(1, a))
        return (f"{name} has {a} {item} and gives away {b}. "
                f"How many {item} does {name} have left?"), a - b
    if kind == 2:
        a, b = int(rng.integers(2, 7)), int(rng.integers(2, 7))
        return (f"{name} has {a} bags with {b} {item} in each bag. "
                f"How many {item} does {name} have?"), a * b
    b = int(rng.integers(2, 6))
    q = int(rng.integers(2, 6))
    return (f"{name} shares {b * q} {item} equally among {b} friends. "
            f"How many {item} does each friend get?"), q


def _gen_multi(rng):
    kind = int(rng.integers(4))
    a, b, c = (int(x) for x in rng.integers(2, 10, size=3))
    if kind == 0:
        return f"What is {a} * {b} + {c}?", a * b + c
    if kind == 1:
        return f"What is ({a} + {b}) * {c}?", (a + b) * c
    if kind == 2:
        d = int(rng.integers(1, a * b))
        return f"What is {a} * {b} - {d}?", a * b - d
    name = _NAMES[int(rng.integers(len(_NAMES)))]
    item = _ITEMS[int(rng.integers(len(_ITEMS)))]
    d = int(rng.integers(1, a * b))
    return (f"{name} buys {a} boxes of {b} {item} and then loses {d} of them. "
            f"How many {item} are left?"), a * b - d


_GENERATORS = {"add1": _gen_add1, "mul1": _gen_mul1, "add21": _gen_add21,
               "add22": _gen_add22, "addsub": _gen_addsub, "word": _gen_word,
               "multi": _gen_multi}


def _allocate(n: int, weights: dict) -> dict:
    """Split n over the levels in proportion to weights (largest remainder)."""
    names = list(weights)
    w = np.array([weights[k] for k in names], dtype=float)
    raw = n * w / w.sum()
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return dict(zip(names, counts.tolist()))


def arithmetic(n: int, seed: int = 0, levels=None) -> pd.DataFrame:
    """Generated arithmetic questions in graded difficulty.

    Parameters
    ----------
    n : int
        Number of questions.
    seed : int, default=0
        Seed; the same ``(n, seed, levels)`` gives the same table. Each level draws from
        its own stream, so the first k questions of a level do not depend on ``n``.
    levels : list of str or dict, optional
        Levels to draw from (keys of :data:`ARITHMETIC_LEVELS`), or a dict level -> weight.
        Defaults to all levels with the weights of :data:`ARITHMETIC_LEVELS`.

    Returns
    -------
    DataFrame
        Columns ``query_id`` (``"arith-<level>-<k>"``), ``query``, ``gold`` and ``level``,
        in a seeded shuffled order (so any prefix covers all levels). No question repeats.

    Raises
    ------
    ValueError
        On an unknown level, or when a level cannot yield that many distinct questions.
    """
    n = check_int(n, "n", min_val=1)
    if levels is None:
        weights = dict(ARITHMETIC_LEVELS)
    elif isinstance(levels, dict):
        weights = {str(k): float(v) for k, v in levels.items()}
    else:
        if isinstance(levels, str):
            levels = [levels]
        weights = {str(k): ARITHMETIC_LEVELS.get(str(k), 0.0) or 1.0 for k in levels}
    unknown = sorted(set(weights) - set(ARITHMETIC_LEVELS))
    if unknown or not weights:
        raise ValueError(f"Unknown arithmetic level(s) {unknown or levels!r}; choose from "
                         f"{list(ARITHMETIC_LEVELS)}.")
    if any(v < 0 for v in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"Level weights must be >= 0 with a positive sum, got {weights}.")
    counts = _allocate(int(n), weights)
    rows, seen = [], set()
    for li, level in enumerate(ARITHMETIC_LEVELS):
        want = counts.get(level, 0)
        if not want:
            continue
        rng = np.random.default_rng([int(seed), li])
        k, misses = 0, 0
        while k < want:
            if misses > 5000:  # 5000 duplicates in a row: the level is exhausted
                raise ValueError(
                    f"Level {level!r} cannot yield {want} distinct questions (got {k}); ask "
                    f"for fewer questions or give this level a smaller weight."
                )
            text, answer = _GENERATORS[level](rng)
            if text in seen:
                misses += 1
                continue
            misses = 0
            seen.add(text)
            rows.append({"query_id": f"arith-{level}-{k}", "query": text,
                         "gold": str(answer), "level": level})
            k += 1
    order = np.random.default_rng([int(seed), 99]).permutation(len(rows))
    return pd.DataFrame([rows[i] for i in order]).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# GSM-Symbolic (reasoning-gym)
# --------------------------------------------------------------------------------------

_GSM_INSTALL = "pip install 'ttcrouter[gsm]'"


def _load_gsm_generators() -> tuple[dict, list]:
    """The GSM-Symbolic generator functions of reasoning-gym and its list of usable tasks.

    reasoning-gym's package ``__init__`` imports every task family and their dependencies;
    the three GSM-Symbolic files only need ``reasoning_gym/utils.py``, so they are loaded
    from their files directly under private module names.
    """
    spec = importlib.util.find_spec("reasoning_gym")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"gsm_symbolic needs the reasoning-gym package; install it with {_GSM_INSTALL}."
        )
    root = Path(spec.submodule_search_locations[0])
    folder = root / "arithmetic" / "gsm_symbolic"

    def load(name: str, path: Path):
        mod_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        return module

    utils = sys.modules.get("reasoning_gym.utils") or load("_ttcrouter_rg_utils",
                                                           root / "utils.py")
    injected = "reasoning_gym.utils" not in sys.modules
    if injected:
        sys.modules["reasoning_gym.utils"] = utils
    try:
        generators = {}
        for fname in ("generators_00_49.py", "generators_50_99.py"):
            module = load(f"_ttcrouter_rg_{fname[:-3]}", folder / fname)
            for attr in dir(module):
                if attr.startswith("generate_") and attr[9:].isdigit():
                    generators[int(attr[9:])] = getattr(module, attr)
    finally:
        if injected:
            sys.modules.pop("reasoning_gym.utils", None)
    # The list of tasks reasoning-gym marks as correct, read from its source (no import).
    source = (folder / "gsm_symbolic.py").read_text()
    match = re.search(r"tasks_ok\s*=\s*\[([^\]]*)\]", source)
    tasks_ok = ([int(x) for x in re.findall(r"\d+", match.group(1))] if match
                else sorted(generators))
    tasks_ok = [t for t in tasks_ok if t in generators]
    if not tasks_ok:
        raise ImportError("No GSM-Symbolic generators found in the installed reasoning-gym.")
    return generators, tasks_ok


def gsm_symbolic(n: int, seed: int = 0) -> pd.DataFrame:
    """GSM8K-style word problems from reasoning-gym's GSM-Symbolic templates.

    Needs the optional extra ``gsm`` (``pip install 'ttcrouter[gsm]'``). Only the templates
    reasoning-gym marks as correct are used.

    Parameters
    ----------
    n : int
        Number of problems.
    seed : int, default=0

    Returns
    -------
    DataFrame
        Columns ``query_id`` (``"gsm-<k>"``), ``query``, ``gold``, ``template`` (the
        GSM-Symbolic task number) and ``source``. No question repeats.
    """
    from random import Random

    n = check_int(n, "n", min_val=1)
    generators, tasks_ok = _load_gsm_generators()
    rng = Random(int(seed))
    rows, seen, tries = [], set(), 0
    while len(rows) < n:
        tries += 1
        if tries > 50 * n + 1000:
            raise ValueError(f"Could not draw {n} distinct GSM-Symbolic problems.")
        task = rng.choice(tasks_ok)
        example = generators[task](Random(rng.getrandbits(64)), 1.0)
        question = example["question"].strip()
        if question in seen:
            continue
        seen.add(question)
        rows.append({"query_id": f"gsm-{len(rows)}", "query": question,
                     "gold": str(example["answer"]), "template": int(task),
                     "source": "gsm_symbolic"})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# JSONL files
# --------------------------------------------------------------------------------------

_FORMATS = {
    # format: (question field, answer field)
    "gsm8k": ("question", "answer"),
    "numina": ("problem", "solution"),
    "plain": ("question", "gold"),
}
_ID_FIELDS = ("id", "query_id", "idx", "uid")


def _gsm8k_gold(answer: str) -> str | None:
    match = re.search(r"####\s*(.+?)\s*$", answer.strip())
    return match.group(1).replace(",", "").strip() if match else None


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched."""
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = start = starts[-1]
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i].strip()
        i += 1
    return None


def _detect_format(record: dict) -> str:
    if "problem" in record and "solution" in record:
        return "numina"
    if "question" in record and "answer" in record:
        return "gsm8k"
    if "question" in record and "gold" in record:
        return "plain"
    return ""


def load_jsonl(path, format: str = "auto", question_field: str | None = None,
               answer_field: str | None = None, id_field: str | None = None) -> pd.DataFrame:
    """Load queries from a JSON-lines file.

    Parameters
    ----------
    path : str or Path
    format : {"auto", "gsm8k", "numina", "plain"}, default="auto"
        ``gsm8k``: fields ``question``/``answer``, gold = the number after ``####``.
        ``numina`` (NuminaMath-CoT): fields ``problem``/``solution``, gold = the content of
        the last ``\\boxed{}`` of the solution. ``plain``: fields ``question``/``gold``, gold
        taken as it is. ``auto`` picks by the fields of the first record.
    question_field, answer_field : str, optional
        Override the field names of the format.
    id_field : str, optional
        Field holding a unique id; by default ``id``/``query_id``/``idx``/``uid`` when the
        first record has one, else ``"<file stem>-<line number>"``.

    Returns
    -------
    DataFrame
        Columns ``query_id``, ``query``, ``gold``, ``source`` (the file name) and ``line``.

    Raises
    ------
    DatasetError
        On a line that is not a JSON object, a missing field, an empty question, an answer
        without an extractable gold, or a duplicated id; the message gives the line number.
    """
    path = Path(path)
    if format not in ("auto", *_FORMATS):
        raise ValueError(f"format must be one of 'auto', {', '.join(map(repr, _FORMATS))}; "
                         f"got {format!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"No JSONL file at {str(path)!r}.")
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{lineno}: not valid JSON ({exc.msg} at column "
                                   f"{exc.colno}); each line must be one JSON object.") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object, got "
                                   f"{type(record).__name__}.")
            records.append((lineno, record))
    if not records:
        raise DatasetError(f"{path}: no records (the file is empty).")
    fmt = format
    if fmt == "auto":
        fmt = _detect_format(records[0][1])
        if not fmt and question_field and answer_field:
            fmt = "plain"
        if not fmt:
            raise DatasetError(
                f"{path}: cannot tell the format from the fields of line {records[0][0]} "
                f"({sorted(records[0][1])}); pass format='gsm8k'|'numina'|'plain' or "
                f"question_field=/answer_field=."
            )
    qf = question_field or _FORMATS[fmt][0]
    af = answer_field or _FORMATS[fmt][1]
    if id_field is None:
        id_field = next((f for f in _ID_FIELDS if f in records[0][1]), None)
    rows, first_line = [], {}
    for lineno, record in records:
        for field_name in (qf, af) + ((id_field,) if id_field else ()):
            if field_name not in record:
                raise DatasetError(f"{path}:{lineno}: missing field {field_name!r} (fields "
                                   f"present: {sorted(record)}).")
        question = record[qf]
        if not isinstance(question, str) or not question.strip():
            raise DatasetError(f"{path}:{lineno}: empty question in field {qf!r}.")
        raw = record[af]
        if fmt == "gsm8k":
            gold = _gsm8k_gold(str(raw))
            what = "no '#### <answer>' line"
        elif fmt == "numina":
            gold = _last_boxed(str(raw))
            what = "no \\boxed{...} answer"
        else:
            gold = None if raw is None else str(raw).strip()
            what = "an empty answer"
        if not gold:
            raise DatasetError(f"{path}:{lineno}: field {af!r} has {what}.")
        qid = str(record[id_field]) if id_field else f"{path.stem}-{lineno}"
        if qid in first_line:
            raise DatasetError(f"{path}:{lineno}: duplicated id {qid!r} (also on line "
                               f"{first_line[qid]}); ids must be unique.")
        first_line[qid] = lineno
        rows.append({"query_id": qid, "query": question.strip(), "gold": gold,
                     "source": path.name, "line": lineno})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# dispatch and checks
# --------------------------------------------------------------------------------------


def load_queries(spec, seed: int = 0) -> pd.DataFrame:
    """Resolve a dataset spec: ``"arithmetic:N"``, ``"gsm:N"``, a JSONL path, or a table.

    Parameters
    ----------
    spec : str, Path or DataFrame
    seed : int, default=0

    Returns
    -------
    DataFrame
        A checked query table (see :func:`as_queries`).
    """
    if isinstance(spec, pd.DataFrame):
        return as_queries(spec)
    text = str(spec)
    match = re.fullmatch(r"(arithmetic|arith|gsm|gsm_symbolic):(\d+)", text.strip())
    if match:
        kind, n = match.group(1), int(match.group(2))
        return arithmetic(n, seed=seed) if kind.startswith("arith") else gsm_symbolic(n, seed)
    path = Path(text)
    if path.suffix.lower() in (".jsonl", ".json") or path.exists():
        return load_jsonl(path)
    raise ValueError(f"Unknown dataset {text!r}: use 'arithmetic:N', 'gsm:N' or a path to a "
                     f"JSONL file.")


def as_queries(queries) -> pd.DataFrame:
    """Check a query table: columns ``query_id``, ``query``, ``gold``; unique ids; no empty
    question. A list of strings gets ids ``q-<i>`` and no gold.

    Returns
    -------
    DataFrame
        A copy with string ids.
    """
    if isinstance(queries, (list, tuple)) and all(isinstance(q, str) for q in queries):
        queries = pd.DataFrame({"query_id": [f"q-{i}" for i in range(len(queries))],
                                "query": list(queries), "gold": [None] * len(queries)})
    if not isinstance(queries, pd.DataFrame):
        raise TypeError(f"queries must be a DataFrame with columns query_id, query, gold (or a "
                        f"list of strings), got {type(queries).__name__}.")
    missing = [c for c in ("query_id", "query", "gold") if c not in queries.columns]
    if missing:
        raise DatasetError(f"Query table lacks column(s) {missing}; it needs query_id, query "
                           f"and gold.")
    df = queries.reset_index(drop=True).copy()
    df["query_id"] = df["query_id"].astype(str)
    empty = df["query"].isna() | (df["query"].astype(str).str.strip() == "")
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise DatasetError(f"Query table row {i} (query_id={df['query_id'][i]!r}): empty "
                           f"question.")
    dup = df["query_id"].duplicated(keep=False)
    if dup.any():
        qid = df["query_id"][dup].iloc[0]
        rows = np.flatnonzero((df["query_id"] == qid).to_numpy()).tolist()
        raise DatasetError(f"Query table: duplicated query_id {qid!r} in rows {rows}; ids must "
                           f"be unique.")
    df["gold"] = df["gold"].map(lambda g: None if g is None or (isinstance(g, float)
                                                                  and np.isnan(g)) else str(g))
    return df
