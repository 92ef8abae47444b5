#!/usr/bin/env python3
"""One line per kernel launch of an Nsight Compute CSV (`ncu --csv --page details`, as gpu-check.sh writes them),
then its warp stall reasons, largest first.

usage: scripts/ncu-summary.py FILE.csv [--stalls N]

For reading gpu-check's ncu4096, ncu_wgmma_mlp and ncu_wgmma_chain stages: each launch's duration, cycles and SM
clock (a kernel slower at the same cycles ran at a lower clock), SM, memory, DRAM, L1 and L2 throughput (% of peak;
L1 counts shared memory, which a wgmma GEMM's operands, 3xTF32's split and the weights' fragments all cross), L2
hit rate, registers, achieved occupancy and the block limit(s) that bind it, then the
N largest stall reasons (cycles a warp spends stalled on each per issued instruction, default 6) where the CSV
has them (the smsp__average_warps_issue_stalled_* metrics; the third run's ncu4096 has none).
"""
import argparse
import csv
import sys

# (label, section-name prefix or None for any, metric name)
COLUMNS = [
    ("us", "GPU Speed Of Light", "Duration"),
    ("kcycles", "GPU Speed Of Light", "Elapsed Cycles"),
    ("MHz", "GPU Speed Of Light", "SM Frequency"),
    ("SM%", "GPU Speed Of Light", "Compute (SM) Throughput"),
    ("mem%", "GPU Speed Of Light", "Memory Throughput"),
    ("DRAM%", "GPU Speed Of Light", "DRAM Throughput"),
    ("L1%", "GPU Speed Of Light", "L1/TEX Cache Throughput"),   # shared memory's traffic included
    ("L2%", "GPU Speed Of Light", "L2 Cache Throughput"),
    ("L2hit%", "Memory Workload Analysis", "L2 Hit Rate"),
    ("regs", "Launch Statistics", "Registers Per Thread"),
    ("grid", "Launch Statistics", "Grid Size"),
    ("waves", "Launch Statistics", "Waves Per SM"),
    ("occ%", "Occupancy", "Achieved Occupancy"),
]
LIMITS = ["Block Limit Registers", "Block Limit Shared Mem", "Block Limit Warps", "Block Limit SM"]
STALL = "smsp__average_warps_issue_stalled_"


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def launches(path):
    """{launch id: (kernel name, {(section, metric): (value, unit)})} in the file's order."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    start = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
    if start is None:
        sys.exit(f"{path}: no header row (ID, ...): not an ncu --csv --page details file")
    col = {h: i for i, h in enumerate(rows[start])}
    out = {}
    for r in rows[start + 1:]:
        if len(r) <= col["Metric Value"] or not r[col["Metric Name"]]:
            continue
        name, metrics = out.setdefault(r[col["ID"]], (r[col["Kernel Name"]], {}))
        metrics[(r[col["Section Name"]], r[col["Metric Name"]])] = (r[col["Metric Value"]], r[col["Metric Unit"]])
    return out


def find(metrics, section, metric):
    for (s, m), (value, unit) in metrics.items():
        if m == metric and (section is None or s.startswith(section)):
            v = number(value)
            if v is None:
                return None
            if metric == "Duration":   # in µs
                return v * (1000.0 if unit == "ms" else 0.001 if unit == "ns" else 1.0)
            if metric == "Elapsed Cycles":   # in thousands: the same kernel at another clock takes about as many
                return v / 1000.0
            if unit in ("hz", "Hz"):   # in MHz: a kernel whose clock drops (power) shows it here, not in its cycles
                return v / 1e6
            return v
    return None


def main():
    cli = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    cli.add_argument("csv", help="an ncu --csv --page details file")
    cli.add_argument("--stalls", type=int, default=6, help="stall reasons to list per launch (default 6)")
    args = cli.parse_args()
    top = args.stalls
    data = launches(args.csv)
    print(f"{'id':>3} " + " ".join(f"{label:>7}" for label, _, _ in COLUMNS) + "  limit      kernel")
    for lid, (name, metrics) in data.items():
        cells = []
        for label, section, metric in COLUMNS:
            v = find(metrics, section, metric)
            cells.append(f"{v:7.1f}" if v is not None else f"{'-':>7}")
        limits = [(find(metrics, "Occupancy", m), m.replace("Block Limit ", "")) for m in LIMITS]
        limits = [(v, m) for v, m in limits if v is not None]
        binding = "/".join(m for v, m in limits if v == min(limits)[0]) if limits else "-"
        print(f"{lid:>3} " + " ".join(cells) + f"  {binding:<10} {name}")
        stalls = [(number(v), m[len(STALL):].replace("_per_issue_active.ratio", "")) for (s, m), (v, u) in metrics.items() if m.startswith(STALL)]
        stalls = sorted(((v, m) for v, m in stalls if v is not None), reverse=True)
        if stalls:
            print("      stalls, cycles per issue: " + ", ".join(f"{m} {v:.2f}" for v, m in stalls[:top]))


if __name__ == "__main__":
    main()
