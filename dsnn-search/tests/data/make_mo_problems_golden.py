"""Golden values of the multi-objective test problems, computed with pymoo.

Writes mo_problems_golden.json beside this file: for every instance (ZDT1-6;
DTLZ1-7 with 2, 3, 5 and 10 objectives; WFG1-9 with 2 and 3 objectives at
pymoo's parameterisation, 24 variables, and with 3 objectives at 10
variables) its bounds and pymoo's objective values at the lower and upper
bounds, the box midpoint and eight uniform random points; and points of the
true front: pymoo's own front where pymoo computes one offline (ZDT, DTLZ1-4
up to 3 objectives), and for WFG pymoo's shape functions at random position
values with the distance term zero (the front by definition; evaluating
pymoo's Pareto set instead lands behind the front, because 0.35 * 2i / 2i is
not always 0.35 in floating point and WFG1's bias y^0.02 turns 1e-16 into
0.48), non-dominated points only.

dsnn-search/tests/golden_problems.rs reads the file; run this script only to
regenerate it (python 3 with pymoo 0.6.2 and numpy):

    python3 -m venv /tmp/golden && /tmp/golden/bin/pip install pymoo==0.6.2
    /tmp/golden/bin/python dsnn-search/tests/data/make_mo_problems_golden.py
"""

import json
import os

import numpy as np
import pymoo
from pymoo.problems import get_problem
from pymoo.problems.many import wfg as pwfg
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def wfg_front(name, p, rng, n):
    """pymoo's WFG shape functions at n random position vectors (x_M = 0)."""
    m = p.n_obj
    t = np.column_stack([rng.random((n, m - 1)), np.zeros(n)])
    y = p._post(t, p.A)
    x = y[:, :-1]
    i = int(name[3:])
    if i == 1:
        h = [pwfg._shape_convex(x, j + 1) for j in range(m - 1)] + [pwfg._shape_mixed(y[:, 0], alpha=1.0, A=5.0)]
    elif i == 2:
        h = [pwfg._shape_convex(x, j + 1) for j in range(m - 1)] + [
            pwfg._shape_disconnected(y[:, 0], alpha=1.0, beta=1.0, A=5.0)
        ]
    elif i == 3:
        h = [pwfg._shape_linear(x, j + 1) for j in range(m)]
    else:
        h = [pwfg._shape_concave(x, j + 1) for j in range(m)]
    f = p._calculate(y, p.S, h)
    return f[NonDominatedSorting().do(f, only_non_dominated_front=True)]


def instances():
    for i in (1, 2, 3, 4, 6):
        yield f"zdt{i}", {}, None
    yield "zdt5", {}, None
    for i in range(1, 8):
        for m in (2, 3, 5, 10):
            k = {1: 5, 7: 20}.get(i, 10)
            yield f"dtlz{i}", {"n_var": m + k - 1, "n_obj": m}, None
    for i in range(1, 10):
        for m, n in ((2, 24), (3, 24), (3, 10)):
            yield f"wfg{i}", {"n_var": n, "n_obj": m}, None


def main():
    rng = np.random.default_rng(20261207)
    out = {
        "generator": "make_mo_problems_golden.py",
        "pymoo_version": pymoo.__version__,
        "numpy_version": np.__version__,
        "note": "All objectives minimised. x is the decision vector (0-based), f pymoo's objectives "
        "(float64). front: points of the true front from pymoo (its pareto_front(), or the "
        "objectives of points of its Pareto set for WFG).",
        "instances": [],
    }
    for name, kwargs, _ in instances():
        p = get_problem(name, **kwargs)
        xl, xu = np.asarray(p.xl, float), np.asarray(p.xu, float)
        binary = name == "zdt5"
        xs = [("lower_bounds", xl), ("upper_bounds", xu)]
        if not binary:
            xs.append(("midpoint", 0.5 * (xl + xu)))
        for j in range(8):
            if binary:
                x = rng.integers(0, 2, p.n_var).astype(float)
            else:
                x = xl + rng.random(p.n_var) * (xu - xl)
            xs.append((f"random_{j}", x))
        cases = []
        for label, x in xs:
            f = p.evaluate(np.atleast_2d(x), return_values_of=["F"])[0]
            cases.append({"label": label, "x": [float(v) for v in x], "f": [float(v) for v in f]})
        front = None
        if name.startswith("wfg"):
            front = wfg_front(name, p, rng, 40 if p.n_obj == 2 else 80)
        elif name == "zdt5":
            front = None
        elif name.startswith("zdt") or (name in ("dtlz1", "dtlz2", "dtlz3", "dtlz4") and p.n_obj <= 3):
            front = p.pareto_front()
        entry = {
            "name": name,
            "n_var": int(p.n_var),
            "n_obj": int(p.n_obj),
            "xl": [float(v) for v in xl],
            "xu": [float(v) for v in xu],
            "cases": cases,
        }
        if front is not None:
            idx = np.linspace(0, len(front) - 1, min(len(front), 60)).round().astype(int)
            entry["front"] = [[float(v) for v in front[i]] for i in sorted(set(idx))]
        out["instances"].append(entry)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mo_problems_golden.json")
    with open(path, "w") as fh:
        fh.write("{\n")
        for key in ("generator", "pymoo_version", "numpy_version", "note"):
            fh.write(f" {json.dumps(key)}: {json.dumps(out[key])},\n")
        fh.write(' "instances": [\n')
        lines = [" " + json.dumps(e, separators=(",", ":")) for e in out["instances"]]
        fh.write(",\n".join(lines))
        fh.write("\n ]\n}\n")
    print(f"wrote {len(out['instances'])} instances to {path}")


if __name__ == "__main__":
    main()
