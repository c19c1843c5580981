"""A seeded, stratified sample of a JSON Lines file, for evaluations too slow to run on every row.

Rows are grouped by the values of ``--by`` (e.g. ``subset,label``); from each group
``round(fraction * size)`` rows are drawn with ``random.Random(seed).sample`` (groups in sorted order),
and the sample keeps the file's order. Prints the per-group counts.

    python scripts/stratified_sample.py IN.jsonl OUT.jsonl --by subset,label --fraction 0.4 --seed 0
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--by", required=True, help="comma-separated fields to stratify on")
    p.add_argument("--fraction", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    fields = args.by.split(",")
    with open(args.input, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, line in enumerate(lines):
        row = json.loads(line)
        groups[tuple(str(row[k]) for k in fields)].append(i)
    rng = random.Random(args.seed)
    keep: set[int] = set()
    for key in sorted(groups):
        members = groups[key]
        chosen = rng.sample(members, round(args.fraction * len(members)))
        keep.update(chosen)
        print(f"{'/'.join(key)}: {len(chosen)} of {len(members)}")
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(lines[i] for i in sorted(keep))
    print(f"{len(keep)} of {len(lines)} rows -> {args.output} (by {args.by}, fraction {args.fraction}, "
          f"seed {args.seed})")


if __name__ == "__main__":
    main()
