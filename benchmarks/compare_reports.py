"""Compare the numbers of two `deqfast reproduce` results.json files.

Usage: python benchmarks/compare_reports.py A/results.json B/results.json

Prints the number of leaves compared, the largest relative difference between numbers
(timings, CPU times, load averages and the creation time are skipped), and any difference
in structure or text.
"""

import json
import math
import sys

SKIP = {"timings_seconds", "cpu_seconds", "load_average", "created"}


def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in SKIP and not path:
                continue
            if k not in a or k not in b:
                out["missing"].append(f"{path}/{k} only in {'A' if k in a else 'B'}")
                continue
            walk(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out["missing"].append(f"{path}: lengths {len(a)} vs {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        out["n"] += 1
        if a == b:
            return
        if not (math.isfinite(a) and math.isfinite(b)):
            out["missing"].append(f"{path}: {a} vs {b}")
            return
        rel = abs(a - b) / max(abs(a), abs(b), 1e-300)
        if rel > out["max"][0]:
            out["max"] = (rel, path, a, b)
        out["diffs"].append((rel, path))
    else:
        out["n"] += 1
        if a != b:
            out["strings"].append(f"{path}: {a!r} vs {b!r}")


a = json.load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
out = {"n": 0, "max": (0.0, None, None, None), "missing": [], "strings": [], "diffs": []}
walk(a, b, "", out)
print(f"leaves compared: {out['n']}, differing numbers: {len(out['diffs'])}")
print(
    f"max relative difference: {out['max'][0]:.3g} at {out['max'][1]} "
    f"({out['max'][2]!r} vs {out['max'][3]!r})"
)
for d in sorted(out["diffs"], reverse=True)[:8]:
    print(f"  {d[0]:.3g} {d[1]}")
print("structure differences:", len(out["missing"]))
for m in out["missing"][:20]:
    print("  ", m)
print("string differences:", len(out["strings"]))
for s in out["strings"][:20]:
    print("  ", s)
