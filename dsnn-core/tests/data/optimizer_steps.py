"""Writes optimizer_steps.json: ten steps of each torch.optim optimiser dsnn
implements, on one fixed four-element parameter and a fixed sequence of
gradients, for dsnn-core's optimiser test (tests/optimizers.rs).

Ranger is RAdam inside Lookahead (k = 6, alpha = 0.5), which torch does not
ship; it is composed here from torch.optim.RAdam and the Lookahead rule.

Run with a Python that has torch: python3 optimizer_steps.py
"""

import json
import math

import torch

STEPS = 10
LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 0.01
INITIAL = [0.5, -0.25, 1.5, -2.0]


def gradient(step):
    # Mixed signs and magnitudes over four decades, the same every run.
    return [
        math.sin(1.3 * step + 0.7 * i) * 10.0 ** (i - 2) + 0.05 * (i - 1.5)
        for i in range(len(INITIAL))
    ]


def trajectory(make, lookahead=False):
    p = torch.nn.Parameter(torch.tensor(INITIAL, dtype=torch.float32))
    opt = make([p])
    slow = p.detach().clone()
    out = []
    for t in range(1, STEPS + 1):
        p.grad = torch.tensor(gradient(t), dtype=torch.float32)
        opt.step()
        if lookahead and t % 6 == 0:
            with torch.no_grad():
                slow += 0.5 * (p - slow)
                p.copy_(slow)
        out.append(p.detach().tolist())
    return out


cases = {
    "SGD": lambda ps: torch.optim.SGD(ps, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY),
    "Adam": lambda ps: torch.optim.Adam(ps, lr=LR, weight_decay=WEIGHT_DECAY),
    "Adagrad": lambda ps: torch.optim.Adagrad(ps, lr=LR, weight_decay=WEIGHT_DECAY),
    # Adadelta at torch's default rate of 1: at 0.01 it would barely move.
    "Adadelta": lambda ps: torch.optim.Adadelta(ps, lr=1.0, weight_decay=WEIGHT_DECAY),
    "RMSprop": lambda ps: torch.optim.RMSprop(
        ps, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY
    ),
    "RAdam": lambda ps: torch.optim.RAdam(ps, lr=LR, weight_decay=WEIGHT_DECAY),
}
result = {
    "torch": torch.__version__,
    "lr": LR,
    "lr_overrides": {"Adadelta": 1.0},
    "momentum": MOMENTUM,
    "weight_decay": WEIGHT_DECAY,
    "initial": INITIAL,
    "gradients": [gradient(t) for t in range(1, STEPS + 1)],
    "steps": {name: trajectory(make) for name, make in cases.items()},
}
result["steps"]["Ranger"] = trajectory(cases["RAdam"], lookahead=True)
with open("optimizer_steps.json", "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
print("wrote optimizer_steps.json with torch", torch.__version__)
