"""Compare the numbers of two evaluation metrics.json files, to 1e-12.

Run: python docs/compare_metrics.py BEFORE/metrics.json AFTER/metrics.json

Skips what may differ between two runs of the same computation: timings, package versions,
the source path and the ttcrouter version. Exit status 1 when a number differs.
"""
import json
import math
import sys

SKIP = {"timings", "versions", "source", "ttcrouter_version", "files"}

def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in SKIP:
                continue
            if k not in a or k not in b:
                out.append((path + "/" + k, "missing in " + ("before" if k not in a else "after")))
                continue
            walk(a[k], b[k], path + "/" + k, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path, f"length {len(a)} vs {len(b)}"))
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, bool) or isinstance(b, bool):
        if a != b:
            out.append((path, f"{a!r} vs {b!r}"))
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if not (abs(a - b) <= 1e-12 or (math.isnan(a) and math.isnan(b))):
            out.append((path, f"{a!r} vs {b!r} (diff {b - a:.3g})"))
    elif a != b:
        out.append((path, f"{a!r} vs {b!r}"))

def count(x):
    if isinstance(x, dict):
        return sum(count(v) for k, v in x.items() if k not in SKIP)
    if isinstance(x, list):
        return sum(count(v) for v in x)
    return 1 if isinstance(x, (int, float)) and not isinstance(x, bool) else 0

a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
out = []
walk(a, b, "", out)
print(f"numbers compared: {count(a)} (before) / {count(b)} (after); differences: {len(out)}")
for p, d in out[:50]:
    print(" ", p, d)
sys.exit(1 if out else 0)
