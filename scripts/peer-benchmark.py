"""Peer benchmark of dsnn's optimizers on the standard multi-objective suite.

Runs pymoo's NSGA-II, Optuna's NSGA-II and multi-objective TPE, SMAC3's
ParEGO and random search, each with its defaults, and dsnn's optimizers with
theirs through `dsnn run` (an experiment file with a `[problem]` table, as a
user writes it), on ZDT1-4 and ZDT6, DTLZ1-7 and WFG1-9 (2 and 3 objectives),
at 100 and 1,000 evaluations, several seeds. Every run stores the objective
vectors of all its evaluations in its own file, so an interrupted benchmark
resumes where it stopped; `score` then scores every run with one metric
implementation (dsnn-search's IGD+ and normalised hypervolume, through
`cargo run --example score_peer_runs`) and writes the table into
docs/search.md. Use `scripts/peer-benchmark.sh`, which creates the virtual
environment; see docs/search.md for what is run and why. `SCORER=path`
uses an already built `score_peer_runs`; `DSNN=path` an already built `dsnn`.

    python scripts/peer-benchmark.py run [--out DIR] [--seeds 5] [--only NAME ...]
    python scripts/peer-benchmark.py score [--out DIR] [--write-docs]
    python scripts/peer-benchmark.py compare TABLE.md [--budget 100] [--peers optuna-tpe smac-parego]

`compare` holds the dsnn columns of a table written by `score_peer_runs`
(e.g. of in-process variants from `suite_runs`) against the peers' per-cell
mean IGD+ in the table of docs/search.md (`--reference`), for when the
peers' runs are not at hand: per variant the cells where it is below every
peer, the largest ratio to the best peer, and the geometric mean of that
ratio; `--cells VARIANT` prints the variant's per-cell ratios.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, objectives); ZDT5 is left out: pymoo declares its 80 bits as floats in
# [0, 1], so its optimizers' defaults would search a continuous relaxation that
# dsnn (integers 0/1) does not.
SUITE = (
    [(f"zdt{i}", 2) for i in (1, 2, 3, 4, 6)]
    + [(f"dtlz{i}", m) for i in range(1, 8) for m in (2, 3)]
    + [(f"wfg{i}", m) for i in range(1, 10) for m in (2, 3)]
)

# Which optimizer runs at which budgets. SMAC3 and Optuna's TPE at 1,000
# evaluations take minutes to hours per run on two cores (SMAC3 about 0.3-0.5 s
# per trial at 100 and growing), so they run at 100 only (docs/search.md).
OPTIMIZERS = {
    "random": (100, 1000),
    "optuna-tpe": (100,),
    "pymoo-nsga2": (100, 1000),
    "optuna-nsga2": (100, 1000),
    "smac-parego": (100,),
    "dsnn-random": (100, 1000),
    "dsnn-nsga2": (100, 1000),
    "dsnn-parego": (100,),
    "dsnn-tpe": (100, 1000),
    "dsnn-evotpe": (100,),
    "dsnn-gpehvi": (100,),
    "dsnn-evogp": (100,),
}


def n_var(name, m):
    """The default sizes of dsnn's `TestProblem::by_name`, which are pymoo's
    (WFG: k + 20 with pymoo's k)."""
    if name.startswith("zdt"):
        return 30 if name in ("zdt1", "zdt2", "zdt3") else 10
    if name.startswith("dtlz"):
        return m + {"dtlz1": 5, "dtlz7": 20}.get(name, 10) - 1
    return (4 if m == 2 else 2 * (m - 1)) + 20


def pymoo_problem(name, m):
    from pymoo.problems import get_problem

    if name.startswith("zdt"):
        return get_problem(name)
    return get_problem(name, n_var=n_var(name, m), n_obj=m)


def run_random(problem, budget, seed):
    rng = np.random.default_rng(seed)
    x = problem.xl + rng.random((budget, problem.n_var)) * (problem.xu - problem.xl)
    return problem.evaluate(x, return_values_of=["F"]).tolist()


def run_pymoo_nsga2(problem, budget, seed):
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    seen = []

    class Recorded(Problem):
        def __init__(self):
            super().__init__(n_var=problem.n_var, n_obj=problem.n_obj, xl=problem.xl, xu=problem.xu)

        def _evaluate(self, x, out, *args, **kwargs):
            f = problem.evaluate(x, return_values_of=["F"])
            seen.extend(f.tolist())
            out["F"] = f

    minimize(Recorded(), NSGA2(), ("n_eval", budget), seed=seed, verbose=False)
    return seen[:budget]


def optuna_run(problem, budget, seed, sampler):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen = []

    def objective(trial):
        x = np.array(
            [trial.suggest_float(f"x{i}", problem.xl[i], problem.xu[i]) for i in range(problem.n_var)]
        )
        f = problem.evaluate(x[None, :], return_values_of=["F"])[0].tolist()
        seen.append(f)
        return f

    study = optuna.create_study(directions=["minimize"] * problem.n_obj, sampler=sampler(seed=seed))
    study.optimize(objective, n_trials=budget)
    return seen


def run_optuna_nsga2(problem, budget, seed):
    import optuna

    return optuna_run(problem, budget, seed, optuna.samplers.NSGAIISampler)


def run_optuna_tpe(problem, budget, seed):
    import optuna

    return optuna_run(problem, budget, seed, optuna.samplers.TPESampler)


def run_smac_parego(problem, budget, seed):
    from ConfigSpace import ConfigurationSpace, Float
    from smac import HyperparameterOptimizationFacade, Scenario
    from smac.multi_objective.parego import ParEGO

    cs = ConfigurationSpace(seed=seed)
    cs.add([Float(f"x{i}", (float(problem.xl[i]), float(problem.xu[i]))) for i in range(problem.n_var)])
    names = [f"f{k}" for k in range(problem.n_obj)]
    seen = []

    def target(config, seed: int = 0):
        x = np.array([config[f"x{i}"] for i in range(problem.n_var)])
        f = problem.evaluate(x[None, :], return_values_of=["F"])[0].tolist()
        seen.append(f)
        return dict(zip(names, f))

    with tempfile.TemporaryDirectory() as tmp:
        scenario = Scenario(
            cs, objectives=names, n_trials=budget, deterministic=True, seed=seed, output_directory=tmp
        )
        smac = HyperparameterOptimizationFacade(
            scenario,
            target,
            multi_objective_algorithm=ParEGO(scenario),
            overwrite=True,
            logging_level=40,
        )
        smac.optimize()
    return seen[:budget]


def dsnn_exe():
    return os.environ.get("DSNN", os.path.join(ROOT, "target", "release", "dsnn"))


def run_dsnn(kind, name, m, budget, seed):
    """`dsnn run` on an experiment file, as a user runs it; the evaluations
    are read back from the run's trials.jsonl (the default configuration,
    which `dsnn run` evaluates besides the optimizer's trials and which lies
    on the Pareto set of every DTLZ problem, is left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        objectives = "" if name.startswith("zdt") else f"objectives = {m}\n"
        exp = (
            f'name = "bench"\nseed = {seed}\n\n[problem]\nname = "{name}"\n{objectives}\n'
            f'[optimizer]\nkind = "{kind}"\n\n[stop]\ntrials = {budget}\n'
        )
        path = os.path.join(tmp, "exp.toml")
        with open(path, "w") as fh:
            fh.write(exp)
        subprocess.run(
            [dsnn_exe(), "run", path], cwd=tmp, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        seen = []
        with open(os.path.join(tmp, "runs", "bench", "trials.jsonl")) as fh:
            for line in fh:
                e = json.loads(line)
                if e.get("event") != "result" or e["report"]["id"] == 2**64 - 1:
                    continue
                out = e["report"]["outcome"]
                if "Success" in out:
                    seen.append(out["Success"])
        return seen


PEERS = {
    "random": run_random,
    "pymoo-nsga2": run_pymoo_nsga2,
    "optuna-nsga2": run_optuna_nsga2,
    "optuna-tpe": run_optuna_tpe,
    "smac-parego": run_smac_parego,
}


def run_one(opt, name, m, budget, seed):
    if opt.startswith("dsnn-"):
        return run_dsnn(opt[5:], name, m, budget, seed)
    return PEERS[opt](pymoo_problem(name, m), budget, seed)


def cmd_run(args):
    only = set(args.only or OPTIMIZERS)
    budgets = [int(b) for b in args.budgets.split(",")]
    jobs = [
        (opt, b, name, m, seed)
        for opt in OPTIMIZERS
        if opt in only
        for b in OPTIMIZERS[opt]
        if b in budgets
        for seed in range(args.seeds)
        for name, m in SUITE
    ]
    done = 0
    for opt, budget, name, m, seed in jobs:
        path = os.path.join(args.out, "runs", opt, str(budget), f"{name}-m{m}-s{seed}.json")
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        start = time.perf_counter()
        f = run_one(opt, name, m, budget, seed)
        seconds = time.perf_counter() - start
        if len(f) != budget:
            print(f"warning: {opt} {name}-m{m} s{seed}: {len(f)} evaluations of {budget}", file=sys.stderr)
        tmp = path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump({"optimizer": opt, "problem": name, "n_obj": m, "n_var": n_var(name, m),
                       "budget": budget, "seed": seed, "seconds": seconds, "f": f}, fh)
        os.replace(tmp, path)
        done += 1
        print(f"{opt:13} {budget:5} {name}-m{m} s{seed}: {seconds:.1f} s", flush=True)
    print(f"{done} runs done")


def cmd_score(args):
    # SCORER: an already built score_peer_runs executable (else cargo builds it).
    scorer = os.environ.get("SCORER")
    cmd = [scorer] if scorer else [
        "cargo", "run", "--release", "-q", "-p", "dsnn-search", "--example", "score_peer_runs", "--"]
    cmd += [os.path.join(args.out, "runs"), os.path.join(args.out, "table.md")]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    if args.write_docs:
        with open(os.path.join(args.out, "table.md")) as fh:
            table = fh.read()
        docs = os.path.join(ROOT, "docs", "search.md")
        with open(docs) as fh:
            text = fh.read()
        start, end = "<!-- peer-benchmark:start -->", "<!-- peer-benchmark:end -->"
        a, b = text.index(start) + len(start), text.index(end)
        with open(docs, "w") as fh:
            fh.write(text[:a] + "\n" + table.rstrip() + "\n" + text[b:])
        print(f"table written into {docs}")


def read_tables(path, marker=None):
    """Markdown tables of `score_peer_runs`: {budget: {column: {cell: mean IGD+}}}.
    With `marker`, only the text between `<!-- marker:start -->` and `:end`."""
    with open(path) as fh:
        text = fh.read()
    if marker:
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        text = text[text.index(start) + len(start):text.index(end)]
    tables, budget, cols = {}, None, None
    for line in text.splitlines():
        if line.startswith("#### "):
            budget, cols = int(line.split()[1]), None
            tables.setdefault(budget, {})
        elif line.startswith("| problem |") and budget is not None:
            cols = [c.strip() for c in line.strip().strip("|").split("|")][1:]
        elif line.startswith("|---"):
            continue
        elif line.startswith("| ") and cols is not None:
            fields = [c.strip() for c in line.strip().strip("|").split("|")]
            cell = fields[0]
            for col, v in zip(cols, fields[1:]):
                v = v.replace("**", "").strip()
                if v and v != "-":
                    tables[budget].setdefault(col, {})[cell] = float(v.split()[0])
        else:
            cols = None if not line.startswith("|") else cols
    return tables


def cmd_compare(args):
    ours = read_tables(args.table).get(args.budget, {})
    ref = read_tables(args.reference, "peer-benchmark").get(args.budget, {})
    peers = {p: ref.get(p) or ours.get(p) for p in args.peers}
    missing = [p for p, v in peers.items() if not v]
    if missing:
        sys.exit(f"no {args.budget}-evaluation column for {', '.join(missing)}")
    print(f"| variant | below {' and '.join(args.peers)} | "
          + " | ".join(f"below {p}" for p in args.peers) + " | worst | geomean | cells |")
    print("|---|---:|" + "---:|" * len(args.peers) + "---:|---:|---:|")
    for col in sorted(c for c in ours if c.startswith("dsnn-")):
        cells = [c for c in ours[col] if all(c in peers[p] for p in args.peers)]
        if not cells:
            continue
        below = sum(all(ours[col][c] < peers[p][c] for p in args.peers) for c in cells)
        each = [sum(ours[col][c] < peers[p][c] for c in cells) for p in args.peers]
        ratios = {c: ours[col][c] / min(peers[p][c] for p in args.peers) for c in cells}
        worst = max(ratios, key=ratios.get)
        geo = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
        print(f"| {col} | {below} / {len(cells)} | " + " | ".join(f"{e}" for e in each)
              + f" | {ratios[worst]:.2f}x ({worst}) | {geo:.3f} | {len(cells)} |")
        if args.cells == col:
            for c in cells:
                print(f"|   {c} | {ours[col][c]:.4g} | "
                      + " | ".join(f"{p} {peers[p][c]:.4g}" for p in args.peers) + f" | {ratios[c]:.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the missing runs")
    r.add_argument("--out", default=os.path.join(ROOT, "target", "peer-benchmark"))
    r.add_argument("--seeds", type=int, default=5)
    r.add_argument("--budgets", default="100,1000")
    r.add_argument("--only", nargs="*", choices=list(OPTIMIZERS), help="these optimizers only")
    s = sub.add_parser("score", help="score all stored runs and write the table")
    s.add_argument("--out", default=os.path.join(ROOT, "target", "peer-benchmark"))
    s.add_argument("--write-docs", action="store_true", help="replace the table in docs/search.md")
    c = sub.add_parser("compare", help="hold dsnn variants against the documented peer means")
    c.add_argument("table", help="a table written by score_peer_runs")
    c.add_argument("--reference", default=os.path.join(ROOT, "docs", "search.md"))
    c.add_argument("--budget", type=int, default=100)
    c.add_argument("--peers", nargs="+", default=["optuna-tpe", "smac-parego"])
    c.add_argument("--cells", help="also print this variant's per-cell ratios")
    args = ap.parse_args()
    {"run": cmd_run, "score": cmd_score, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
