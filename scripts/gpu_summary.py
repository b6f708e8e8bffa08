#!/usr/bin/env python3
"""Side-by-side table of dsnn's and PyTorch's ResNet20 figures on one GPU.

Reads OUT/gpu_check.json (dsnn's gpu_check) and, when present,
OUT/torch-bench.json and OUT/torch-energy.json (the PyTorch reference's
bench.py and energy_gpu.py). Prints Markdown; standard library only.

    python3 scripts/gpu_summary.py OUT
"""
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "target/gpu-check"
    dsnn = load(os.path.join(out, "gpu_check.json"))
    tb = load(os.path.join(out, "torch-bench.json"))
    te = load(os.path.join(out, "torch-energy.json"))
    if dsnn is None:
        print("no gpu_check.json in %s" % out)
        return 1
    fails = [c["name"] for c in dsnn["kernel_checks"] if not c["pass"]]
    fails += ["%s %s training" % (t["model"], t["variant"]) for t in dsnn["training_checks"] if not t["pass"]]
    n = len(dsnn["kernel_checks"]) + len(dsnn["training_checks"])
    print("correctness: %d of %d checks passed%s" % (n - len(fails), n, (": FAILED " + ", ".join(fails)) if fails else ""))
    print()
    gpu = (tb or {}).get("env", {}).get("gpu") or (te or {}).get("gpu") or dsnn.get("device")
    print("card: %s" % gpu)
    print()
    print("| ResNet20, batch 128 | dsnn train img/s (dsnn conv) | dsnn train img/s (candle conv) | PyTorch train img/s "
          "| dsnn infer mJ/img | PyTorch infer mJ/img | dsnn train mJ/img | PyTorch train mJ/img |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def perf(variant, engine):
        for p in dsnn.get("throughput", []):
            if p["model"] == "resnet20" and p["variant"] == variant and p["engine"] == engine:
                return "%.0f" % p["train_img_s"]
        return "-"

    def denergy(variant, kind):
        for r in dsnn.get("energy", []):
            if r["model"] == "resnet20" and r["variant"] == variant and r["kind"] == kind:
                return "%.2f" % r["mj_per_img"]
        return "-"

    def tperf(variant):
        for r in (tb or {}).get("results", []):
            if r["model"] == "resnet20" and r["variant"] == variant:
                return "%.0f" % r["train"]["img_per_s"]
        return "-"

    def tenergy(variant, kind):
        for r in (te or {}).get("rows", []):
            if r["model"] == "resnet20" and r["variant"] == variant and r["kind"] == kind:
                return "%.2f" % r["mj_per_img"]
        return "-"

    for v in ("float", "Q", "PS"):
        print("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            v, perf(v, "dsnn"), perf(v, "candle"), tperf(v),
            denergy(v, "infer"), tenergy(v, "infer"), denergy(v, "train"), tenergy(v, "train")))
    if dsnn.get("idle_w") is not None or te:
        print()
        print("idle power: dsnn run %s W, PyTorch run %s W" % (
            "%.1f" % dsnn["idle_w"] if dsnn.get("idle_w") is not None else "-",
            "%.1f" % te["idle_w"] if te else "-"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
