#!/usr/bin/env python3
"""Per-kernel times of two `cmc bench --profile --json` results side by side, slowest first.

usage: scripts/profile-diff.py BEFORE.json AFTER.json [sample|step] [--top N]

For reading a GPU run against an earlier one (docs/bench/gpu/h200-run3/call1/wgmma.json, say): each kernel's
time in ms before and after and their ratio, then the totals and the run's own wall times. A kernel in only one
of the two (renamed, fused away) shows a dash on the other side.
"""
import argparse
import json


def load(path):
    with open(path) as f:
        runs = json.load(f)
    return runs[0] if isinstance(runs, list) else runs


def main():
    cli = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    cli.add_argument("before")
    cli.add_argument("after")
    cli.add_argument("which", nargs="?", choices=["step", "sample"], default="step")
    cli.add_argument("--top", type=int, default=30, help="kernels to list (default 30)")
    args = cli.parse_args()
    before, after, which, top = load(args.before), load(args.after), args.which, args.top
    key = {"step": "step_kernels_ms", "sample": "sample_kernels_ms"}[which]
    a, b = before.get(key, {}), after.get(key, {})
    names = sorted(set(a) | set(b), key=lambda n: -max(a.get(n, 0), b.get(n, 0)))
    print(f"{which} kernels, ms: {args.before} -> {args.after}")
    for n in names[:top]:
        x, y = a.get(n), b.get(n)
        ratio = f"{y / x:6.2f}x" if x and y else "       "
        print(f"  {x if x is not None else '-':>9} {y if y is not None else '-':>9} {ratio}  {n}")
    print(f"  {sum(a.values()):9.4f} {sum(b.values()):9.4f}          all kernels ({len(a)} and {len(b)})")
    wall = {"step": "train_step_ms", "sample": None}[which]
    if wall:
        print(f"  {before.get(wall, '-'):>9} {after.get(wall, '-'):>9}          the step's wall time")


if __name__ == "__main__":
    main()
