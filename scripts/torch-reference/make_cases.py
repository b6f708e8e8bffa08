"""Writes dsnn-core/tests/data/torch_networks.json: forward outputs and
weight gradients of every network in networks.py, float, DeepShift-Q and
DeepShift-PS, computed by PyTorch with DeepShift's layers.

Nothing large is committed: weights, batch-norm statistics, inputs and the
logit weighting of the loss come from a formula that dsnn's test
(dsnn-core/tests/torch_networks.rs) evaluates identically (splitmix64 of the
FNV-1a hash of the tensor's name plus the element's index; every value is
exact in f32, and Q weights keep clear of the rounding boundary between two
powers of two). The file holds, per case, the logits of an inference pass
(running statistics), the logits of a training pass (batch statistics) and,
for every parameter of the training pass's loss sum(logits * G), the
gradient's dot product with a formula probe vector and its Euclidean norm.

Usage (torch from PyPI; the DeepShift layers from the PyTorch reference):
    REFERENCE=/work/shared/bench/pytorch-deepshift python make_cases.py [OUT]
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.environ.get("REFERENCE", "../../../shared/bench/pytorch-deepshift"))
import deepshift_ref as ds  # noqa: E402
import networks  # noqa: E402

M64 = (1 << 64) - 1


def fnv1a(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def bits(name, n):
    """splitmix64(fnv1a(name) + i) for i in 0..n, as uint64."""
    with np.errstate(over="ignore"):
        z = np.uint64(fnv1a(name)) + np.arange(n, dtype=np.uint64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def small(name, n):
    """The low 12 bits of each draw, as integers."""
    return (bits(name, n) & np.uint64(0xFFF)).astype(np.int64)


def weight_exponent(fan_in):
    return -((fan_in.bit_length() - 1) // 2 + 1)


def float_weight(name, shape):
    n = int(np.prod(shape))
    fan_in = n // shape[0]
    u = bits(name, n)
    sign = np.where((u & np.uint64(1)) == 1, -1.0, 1.0)
    k = ((u >> np.uint64(1)) % np.uint64(3)).astype(np.float64)
    r = (u >> np.uint64(40)).astype(np.float64) / 2.0 ** 24
    mant = np.where(r < 0.5, 1.0 + r * 0.75, 1.5 + (r - 0.5))
    w = sign * np.exp2(weight_exponent(fan_in) - k) * mant
    return w.astype(np.float32).reshape(shape)


def ps_shift(name, shape):
    n = int(np.prod(shape))
    u = bits(name, n)
    k = ((u >> np.uint64(1)) % np.uint64(3)).astype(np.float64)
    off = np.array([-0.25, 0.0, 0.25])[((u >> np.uint64(3)) % np.uint64(3)).astype(np.int64)]
    return (weight_exponent(n // shape[0]) - k + off).astype(np.float32).reshape(shape)


def ps_sign(name, shape):
    n = int(np.prod(shape))
    u = bits(name, n)
    table = np.array([-1.0, -0.75, -0.25, 0.25, 0.75, 1.0])
    return table[((u >> np.uint64(5)) % np.uint64(6)).astype(np.int64)].astype(np.float32).reshape(shape)


def value(name, shape):
    """The formula value of tensor `name` (by its role, read from the name and rank)."""
    n = int(np.prod(shape))
    s = small(name, n)
    if name.endswith(".shift"):
        return ps_shift(name, shape)
    if name.endswith(".sign"):
        return ps_sign(name, shape)
    if name.endswith(".running_mean"):
        v = ((s % 256) - 128) / 1024.0
    elif name.endswith(".running_var"):
        v = 0.5 + (s % 256) / 256.0
    elif name.endswith(".bias"):
        v = (s - 2048) * 2.0 ** -16
    elif name.endswith(".weight") and len(shape) == 1:
        v = 1.0 + ((s % 256) - 128) / 512.0
    elif name.endswith(".weight"):
        return float_weight(name, shape)
    elif name.startswith("input") or name.startswith("probe") or name.startswith("logit_weights"):
        v = (s - 2048) / 1024.0 if name.startswith("input") else ((s % 256) - 128) / 128.0
    else:
        raise ValueError(name)
    return np.asarray(v, dtype=np.float32).reshape(shape)


# (network, input channels, side, batch): the smallest inputs that exercise
# every layer (and, for VGG19, the grey 1-pixel rule).
CASES = [
    ("resnet20", 3, 8, 2), ("resnet32", 3, 8, 2), ("resnet44", 3, 8, 2), ("resnet56", 3, 8, 2),
    ("resnet110", 3, 8, 2), ("resnet18", 3, 16, 4), ("vgg11", 3, 32, 2), ("vgg19", 1, 16, 4),
    ("mobilenetv2", 3, 16, 2), ("googlenet", 3, 16, 2),
]
CLASSES = 10


def make(name, channels, side, batch, shift_type):
    torch.manual_seed(0)
    model = networks.build(name, channels, CLASSES)
    if shift_type != "float":
        model, _ = ds.convert_to_shift(model, 10000, shift_type, convert_all_linear=True,
                                       convert_weights=True)
    state = model.state_dict()
    with torch.no_grad():
        for key, t in state.items():
            if key.endswith("num_batches_tracked"):
                continue
            t.copy_(torch.from_numpy(value(key, tuple(t.shape))))
    x = torch.from_numpy(value("input", (batch, channels, side, side)))
    g = torch.from_numpy(value("logit_weights", (batch, CLASSES)))
    model.eval()
    with torch.no_grad():
        eval_logits = model(x)
    model.train()
    logits = model(x)
    (logits * g).sum().backward()
    grads = {}
    for key, p in model.named_parameters():
        gr = p.grad.detach().double().flatten()
        probe = torch.from_numpy(value("probe:" + key, (gr.numel(),))).double()
        grads[key] = {"dot": float(gr @ probe), "norm": float(gr.norm())}
    params = sum(p.numel() for p in networks.build(name, channels, CLASSES).parameters())
    return {
        "network": name, "shift_type": shift_type, "input": [batch, channels, side, side],
        "classes": CLASSES, "params": params,
        "eval_logits": eval_logits.flatten().tolist(), "train_logits": logits.detach().flatten().tolist(),
        "grads": grads,
    }


def rounded(obj):
    """Floats to 9 significant digits (beyond f32's precision), to keep the file small."""
    if isinstance(obj, float):
        return float(f"{obj:.9g}")
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    return obj


def main():
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "../../dsnn-core/tests/data/torch_networks.json")
    cases = []
    for name, c, side, n in CASES:
        for st in ("float", "Q", "PS"):
            cases.append(make(name, c, side, n, st))
            print(name, st, "done", file=sys.stderr)
    doc = {"torch": torch.__version__, "generator": "scripts/torch-reference/make_cases.py", "cases": cases}
    with open(out, "w") as f:
        json.dump(rounded(doc), f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
