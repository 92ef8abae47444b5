#!/usr/bin/env python3
"""The issue's four targets from one gpu-check run: cmc's best figure for each among the stages that ran, PyTorch's
best from the same run (torch_peer.json), the bound each target sets, and whether it is met; then the CT step at
4,096 rows under each tiling the run timed, and how each parity stage ended.

    python3 scripts/targets.py /tmp/gpu-out [MORE ...]   # unpacked gpu-out.tgz of each call, e.g. docs/bench/gpu/<run>/call*

A stage's figure counts only if the parity stages that check its kernels passed in the calls given (NEEDS):
fp32_cluster needs parity_cluster, fp32_early parity_early, fp32_tuned (each GEMM in its fastest variant) both, the
defaults parity_fp32 and parity_wgmma, and so on;
a stage NEEDS does not name never counts.
"""
import json
import pathlib
import re
import sys

# Stage name -> the parity stages whose passing it needs before its figures may count; a stage not named here
# never counts toward a target (it is listed, starred, for a person to judge).
_FP32, _WGMMA, _TF32 = ["parity_fp32"], ["parity_fp32", "parity_wgmma"], ["parity_tf32", "parity_wgmma_tf32"]
NEEDS = {
    "fp32_train4096": _WGMMA, "fp32_train4096_pdl": _WGMMA, "fp32_train4096_notune": _WGMMA, "fp32_train4096_noprio": _WGMMA,
    "fp32_train4096_wgmma_nn": _WGMMA, "fp32_square": _WGMMA, "wgmma_wide": _WGMMA,
    "fp32_train256": _FP32, "fp32_train256_pdl": _FP32, "fp32_train256_notune": _FP32, "fp32_train256_noprio": _FP32,
    "fp32_train256_one_stream": _FP32, "fp32_train256_wgmma": _WGMMA,
    "fp32_early": _WGMMA + ["parity_early"], "fp32_wide_early": _WGMMA + ["parity_early"],
    "fp32_cluster": _WGMMA + ["parity_cluster"], "fp32_early_cluster": _WGMMA + ["parity_early", "parity_cluster"],
    "fp32_tuned": _WGMMA + ["parity_early", "parity_cluster"],
    "tf32": _TF32 + ["parity_fused_chain_bulk"], "tf32_split": _TF32, "wgmma_chain_bulk_tf32": _TF32 + ["parity_fused_chain_bulk"],
    "wgmma_chain_tf32": _TF32 + ["parity_fused_chain"], "wgmma_mlp_tf32": _TF32 + ["parity_fused_wgmma"],
    "fused_fp32": _WGMMA + ["parity_fused"],
}

# Stage name -> what the default would change to if that variant of the fp32 step at 4,096 rows wins.
_TILING = "CudaBackend.defaultTiling could take CMC_CUDA_TILES=%s for 3xTF32 below 65,536 rows"
TILINGS = {"fp32_square": _TILING % "wgmma", "fp32_early": _TILING % "wgmma-mixed-early", "fp32_cluster": _TILING % "wgmma-mixed-cluster",
           "fp32_early_cluster": _TILING % "wgmma-mixed-early-cluster", "fp32_train4096_wgmma_nn": _TILING % "wgmma-nn",
           "fp32_tuned": "GemmTuning.TILES could be on by default (CMC_CUDA_TUNE_TILES=1: each GEMM in the fastest of its tiling's variants)"}


def parity(outs):
    """Each parity stage's outcome: 'passed (N tests)', 'FAILED (M of N)', or 'no summary' where it was cut off."""
    got = {}
    for f in sorted(f for out in outs for f in out.glob("parity_*.txt")):
        text = f.read_text(errors="replace")
        ok = re.search(r"\[\s*(\d+) tests successful", text)
        failed = re.search(r"\[\s*(\d+) tests failed", text)
        if ok and failed:
            got[f.stem] = "passed (%s tests)" % ok.group(1) if failed.group(1) == "0" else "FAILED (%s of %d)" % (
                failed.group(1), int(ok.group(1)) + int(failed.group(1)))
        else:
            got[f.stem] = "no summary (cut off?)"
    return got


def main(outs):
    outs = [pathlib.Path(o) for o in outs]
    checks = parity(outs)
    runs = {}
    for f in sorted(f for out in outs for f in out.glob("*.json")):
        name = f.stem if len(outs) == 1 else "%s/%s" % (f.parent.name, f.stem)
        if f.name == "torch_peer.json" or f.name.startswith("timeline"):
            continue
        try:
            data = json.loads(f.read_text())
        except ValueError:
            continue
        for r in data if isinstance(data, list) else [data]:
            if isinstance(r, dict) and "train_step_ms" in r:
                runs[name] = r
    trusted = {n: n.split("/")[-1] in NEEDS and all(checks.get(p, "").startswith("passed") for p in NEEDS[n.split("/")[-1]]) for n in runs}
    torch = {}
    for out in outs:
        if (out / "torch_peer.json").exists():
            torch.update(json.loads((out / "torch_peer.json").read_text()))

    def best_cmc(pick):
        best = None
        for name, r in runs.items():
            v = pick(r) if trusted[name] else None
            if v is not None and (best is None or v < best[0]):
                best = (v, name)
        return best

    def sample_ms(r, batch):
        return next((s["one_step_ms"] for s in r.get("sampling", []) if s["batch"] == batch), None)

    def step_ms(r, batch):
        return r["train_step_ms"] if r.get("train_batch") == batch else None

    def fp32(r):
        return "tf32" not in r.get("device", "") or "3xTF32" in r.get("device", "")

    def torch_best(*keys):
        vals = [(torch[k], k) for k in keys if k in torch]
        return min(vals) if vals else None

    targets = [
        ("CT step, batch 4,096, fp32", 2.0, lambda r: step_ms(r, 4096) if fp32(r) else None,
         torch_best("train_reduce-overhead_fp32_B4096_ms", "train_eager_fp32_B4096_ms")),
        ("CT step, batch 256, fp32", 3.0, lambda r: step_ms(r, 256) if fp32(r) else None,
         torch_best("train_reduce-overhead_fp32_B256_ms", "train_eager_fp32_B256_ms")),
        ("1M 1-step sampling, fp32", 1.4, lambda r: sample_ms(r, 1 << 20) if fp32(r) else None,
         torch_best("sample1_compiled_fp32_B1048576_ms", "sample1_eager_fp32_B1048576_ms")),
        ("1M 1-step sampling, tf32", 2.0, lambda r: sample_ms(r, 1 << 20) if not fp32(r) else None,
         torch_best("sample1_eager_tf32_B1048576_ms", "sample1_compiled_tf32_B1048576_ms")),
    ]
    print("| target | cmc (stage) | PyTorch best (mode) | bound | result |")
    print("|---|---|---|---|---|")
    for label, factor, pick, peer in targets:
        mine = best_cmc(pick)
        cmc = "%.3f ms (%s)" % mine if mine else "not run"
        if peer:
            bound = peer[0] / factor
            result = ("%.2fx, %s" % (peer[0] / mine[0], "met" if mine[0] <= bound else "NOT met")) if mine else "-"
            print("| %s | %s | %.3f ms (%s) | <= %.3f ms (%gx) | %s |" % (label, cmc, peer[0], peer[1], bound, factor, result))
        else:
            print("| %s | %s | no PyTorch figure | - | - |" % (label, cmc))
    steps = [(r["train_step_ms"], n, r.get("device", "")) for n, r in runs.items() if r.get("train_batch") == 4096]
    if steps:
        print("\nCT step at 4,096 rows by stage (fastest first; * = not counted: a parity stage it needs did not pass, or none checks it):")
        for ms, name, device in sorted(steps):
            how = device[device.find("(") + 1:device.rfind(")")] if "(" in device else device
            print("  %8.3f ms  %-28s %s%s" % (ms, name, "" if trusted[name] else "* ", how))
        # The 3xTF32 step's default below 65,536 rows (CudaBackend.defaultTiling) against its variants timed here.
        default = [(ms, n) for ms, n, _ in steps if n.split("/")[-1] == "fp32_train4096"]
        variants = [(ms, n) for ms, n, _ in steps if n.split("/")[-1] in TILINGS and trusted[n]]
        if default and variants and min(variants)[0] < 0.99 * min(default)[0]:
            ms, name = min(variants)
            print("  -> %s is %.1f%% faster than the default (%s): %s" % (name, 100 * (1 - ms / min(default)[0]), min(default)[1],
                                                                          TILINGS[name.split("/")[-1]]))
    if checks:
        print("\nparity:")
        for name, outcome in checks.items():
            print("  %-24s %s" % (name, outcome))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
