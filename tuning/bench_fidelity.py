"""Which fidelity ranks settings the way the final run does: ``make bench-fidelity``.

Trains the same handful of recipes (make train's default and ``--settings``-1 drawn at random from ``make tune``'s
space) at each candidate fidelity (``--fidelity``, as ``make tune FIDELITY=``, repeatable) and at the final budget,
recipe by recipe so a busy spell of a shared machine falls on every fidelity, all scored on the same hold-out. For
each fidelity it prints the Spearman rank correlation of its scores with the final run's, also at the points where
successive halving decides (12% and 36% of a trial's run), whether it picks the final run's best recipe, and its
cost. Figures go to stdout and ``reports/bench-fidelity/<slug>-<arch>.{md,json}``.

    KIP_HOME=/work/exp make bench-fidelity COMPETITION=gic-dev      # about 8 x (18 + 15) minutes
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import optuna  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from competition import settings  # noqa: E402
from competition.errors import run_main  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from pipelines.data import load_dataset  # noqa: E402
from pipelines.tuned import make_config  # noqa: E402
from tuning.fidelity import Fidelity, parse_options, reduce_dataset  # noqa: E402
from tuning.objective import make_objective  # noqa: E402
from tuning.space import build_space, starting_point  # noqa: E402

RUNGS = (12, 36)  # where successive halving decides (tuning.storage.FIRST_RUNG x 3^k)


def default_fidelities(final_minutes: float) -> list[str]:
    m = final_minutes / 6
    return [f"minutes={m:g} subset=1", f"minutes={m:g} subset=0.5", f"minutes={m:g} subset=1 scale=0.5",
            f"minutes={2 * m:g} subset=0.25"]


def recipes(space, config, n: int, seed: int) -> list[dict]:
    """make train's default and ``n - 1`` recipes drawn at random from the space (seeded)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = [starting_point(space, config)]
    for _ in range(n - 1):
        trial = study.ask()
        out.append({name: value for name, value in space.sample(trial).items() if name in space.params})
        study.tell(trial, 0.0)
    return out


def value_at(trial: optuna.trial.FrozenTrial, percent: int) -> float | None:
    """The accuracy a trial reported first at or after ``percent`` of its run (what the pruner compared there)."""
    steps = sorted(s for s in trial.intermediate_values if s >= percent)
    return trial.intermediate_values[steps[0]] if steps else None


def rank_correlation(a: list, b: list) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2 or len({y for _, y in pairs}) < 2:
        return None
    return round(float(spearmanr(*zip(*pairs)).statistic), 3)


def measure(config, space, dataset, fidelities: dict[str, Fidelity], settings_list: list[dict], clock=time.time,
            root=None) -> dict[str, dict]:
    """Train every recipe at every fidelity, recipe by recipe; per fidelity its final values, values at the rungs and
    seconds."""
    root = root or settings.runs_dir() / "bench-fidelity"
    shutil.rmtree(root, ignore_errors=True)  # the runs of an earlier measurement
    studies = {name: optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
               for name in fidelities}
    data = {name: reduce_dataset(dataset, f, config.seed) for name, f in fidelities.items()}
    seconds = {name: 0.0 for name in fidelities}
    for i, params in enumerate(settings_list):
        for name, fidelity in fidelities.items():
            studies[name].enqueue_trial(params)
            objective = make_objective(config, space, data[name], root / name.replace(" ", "_"), fidelity,
                                       clock=clock)
            started = time.perf_counter()
            studies[name].optimize(objective, n_trials=1, catch=(Exception,))
            seconds[name] += time.perf_counter() - started
            trial = studies[name].trials[-1]
            print(f"bench-fidelity: recipe {i} at {name}: {trial.value if trial.value is not None else 'failed'}",
                  flush=True)
    out = {}
    for name, study in studies.items():
        trials = study.trials
        out[name] = {"values": [t.value for t in trials], "seconds": round(seconds[name], 1),
                     **{f"at_{p}": [value_at(t, p) for t in trials] for p in RUNGS}}
    return out


def summarise(results: dict[str, dict], final: str) -> list[dict]:
    truth = results[final]["values"]
    best = max(range(len(truth)), key=lambda i: truth[i] if truth[i] is not None else -1)
    rows = []
    for name, r in results.items():
        values = r["values"]
        picked = max(range(len(values)), key=lambda i: values[i] if values[i] is not None else -1)
        rows.append({"fidelity": name, "spearman": rank_correlation(values, truth),
                     **{f"spearman_at_{p}": rank_correlation(r[f"at_{p}"], truth) for p in RUNGS},
                     "picks_best": picked == best, "seconds": r["seconds"]})
    return rows


def main(argv: list[str] | None = None, clock=time.time) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default=settings.DEFAULT_COMPETITION)
    parser.add_argument("--arch", default=settings.DEFAULT_ARCH)
    parser.add_argument("--settings", type=int, default=8, help="recipes to rank (the default one included)")
    parser.add_argument("--fidelity", action="append", default=None, help="a candidate fidelity (repeatable)")
    parser.add_argument("--set", action="append", default=None, help="training settings, as make train SET=")
    parser.add_argument("--space", action="append", default=None, help="search-space overrides, as make tune SPACE=")
    args = parser.parse_args(argv)

    config, _ = make_config(args.competition, args.arch, args.set, tuned="0")
    config = config.update(verbose=0)
    space = build_space(config.arch, args.space or [])
    final = f"final minutes={config.minutes:g}"
    fidelities = {text: parse_options(text, Fidelity, "FIDELITY").resolve(config.minutes)
                  for text in args.fidelity or default_fidelities(config.minutes)}
    fidelities[final] = Fidelity(minutes=config.minutes, subset=1.0, final_minutes=config.minutes)
    competition = load_competition(config.competition)
    dataset = load_dataset(competition, seed=config.seed, progress=False)
    chosen = recipes(space, config, args.settings, config.seed)
    print(f"bench-fidelity: {competition.slug}, {config.arch}: {len(chosen)} recipes at {len(fidelities)} "
          f"fidelities; {len(dataset.train)} train / {len(dataset.val)} hold-out images", flush=True)
    results = measure(config, space, dataset, fidelities, chosen, clock)
    rows = summarise(results, final)
    lines = [f"# bench-fidelity: {competition.slug}, {config.arch}", "",
             f"{len(chosen)} recipes (make train's default and {len(chosen) - 1} at random from make tune's space), "
             f"each trained at every fidelity and at the final budget ({config.minutes:g} minutes), scored on the "
             f"same hold-out of {len(dataset.val)} images; {os.cpu_count()} CPUs.", "",
             "| fidelity | Spearman with the final run | at 12% | at 36% | picks the final run's best | seconds |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['fidelity']} | {r['spearman']} | {r['spearman_at_12']} | {r['spearman_at_36']} | "
              f"{'yes' if r['picks_best'] else 'no'} | {r['seconds']} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = settings.home() / "reports" / "bench-fidelity"
    write_text(out / f"{competition.slug}-{config.arch}.md", text)
    write_json(out / f"{competition.slug}-{config.arch}.json", {"recipes": chosen, "results": results, "rows": rows})
    print(f"bench-fidelity: {out / f'{competition.slug}-{config.arch}.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
