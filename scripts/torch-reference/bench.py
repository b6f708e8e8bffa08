"""PyTorch's training and inference images/s for the networks of
networks.py (float, DeepShift-Q, DeepShift-PS with every layer converted),
the counterpart of dsnn's `train_throughput` example; run by
scripts/bench-backbones.sh right after dsnn on the same network.

Training step: forward, cross entropy, backward, SGD (lr 0.01, momentum 0.9)
on random 3x32x32 images; inference: an eval-mode forward without gradients
at the same batch. One warm-up step, then the median of --steps steps.

    REFERENCE=/work/shared/bench/pytorch-deepshift python bench.py --models resnet20,vgg11 \\
        --batch 32 --steps 3 --threads 2
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("REFERENCE", "../../../shared/bench/pytorch-deepshift"))
import deepshift_ref as ds  # noqa: E402
import networks  # noqa: E402


def bench(name, variant, batch, steps):
    torch.manual_seed(0)
    model = networks.build(name)
    if variant != "float":
        model, _ = ds.convert_to_shift(model, 10000, variant)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.arange(batch) % 10
    train, infer = [], []
    for step in range(steps + 1):
        model.train()
        t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        train_s = time.perf_counter() - t
        model.eval()
        t = time.perf_counter()
        with torch.no_grad():
            model(x).sum().item()
        infer_s = time.perf_counter() - t
        if step > 0:
            train.append(train_s)
            infer.append(infer_s)
    return batch / statistics.median(train), batch / statistics.median(infer)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet20")
    ap.add_argument("--variants", default="float,Q,PS")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--header", action="store_true", help="print the table header")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.header:
        print(f"| model | variant | PyTorch train img/s (b{args.batch}) | PyTorch infer img/s (b{args.batch}) |")
        print("|---|---|---:|---:|")
    for name in args.models.split(","):
        for variant in args.variants.split(","):
            tr, inf = bench(name, variant, args.batch, args.steps)
            print(f"| {name} | {variant} | {tr:.1f} | {inf:.1f} |", flush=True)


if __name__ == "__main__":
    main()
