"""A samples table the real generator can learn to verify: one-digit sums, right or wrong."""

import numpy as np
import pandas as pd


def toy_samples(n_queries, seed=0):
    """A samples table: per query, 2 right and 2 wrong solutions of a one-digit sum."""
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_queries):
        a, b = (int(v) for v in rng.integers(1, 10, 2))
        for k in range(4):
            value = a + b if k < 2 else a + b + int(rng.choice([-3, -2, -1, 1, 2, 3]))
            text = f"We add {a} and {b}.\n{a} + {b} = {value}\nAnswer: {value}"
            rows.append({"query_id": f"q{q:02d}", "query": f"What is {a} + {b}?",
                         "gold": str(a + b), "repeat": 0, "mode": "cot", "sample": k,
                         "text": text, "answer": str(value), "correct": int(k < 2),
                         "tokens": 14, "finish_reason": "stop", "request_latency_s": 1.0,
                         "round": 0, "prompt_tokens": 40, "score_logprob": 0.5,
                         "reward_tokens": 0.0})
    return pd.DataFrame(rows)
