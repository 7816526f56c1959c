"""``make tune-report``: a study's fidelity, its final check, the importance of each parameter and its top trials
as markdown, and PNG plots, in ``reports/<slug>/``."""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402
from optuna.visualization import matplotlib as ovm  # noqa: E402

from competition import settings  # noqa: E402
from competition.fileio import write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from pipelines.plots import save_figure  # noqa: E402
from tuning.fidelity import describe  # noqa: E402
from tuning.objective import recipe  # noqa: E402
from tuning.storage import count_states, load_study, study_name  # noqa: E402

PLOTS = {
    "history": ovm.plot_optimization_history,
    "importances": ovm.plot_param_importances,
    "parallel": ovm.plot_parallel_coordinate,
    "slice": ovm.plot_slice,
}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def finished(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of the study's complete and pruned trials, each valued at its last reported accuracy (a
    pruned trial at the point where it was stopped): what the importances are measured on, since with successive
    halving most trials are pruned."""
    copy = optuna.create_study(direction="maximize")
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        value = t.value if t.state == TrialState.COMPLETE else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        if value is not None:
            copy.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=value))
    return copy


def importances(study: optuna.Study) -> dict[str, float] | None:
    """fANOVA importance of each parameter sampled in every finished trial, or None with fewer than 3 of them or
    when they all reached the same value."""
    copy = finished(study)
    if len(copy.trials) < 3:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(
                copy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # every value the same, or no parameter common to all trials
        return None


def check_lines(study: optuna.Study) -> list[str]:
    """The fidelity the trials ran at and the final check's figures, as markdown."""
    fidelity, check = study.user_attrs.get("fidelity"), study.user_attrs.get("check")
    lines = [f"Fidelity of the trials: {describe(fidelity) if fidelity else 'not recorded'}", "", "## Final check", ""]
    if not check:
        return lines + ["Not run yet: the study has not finished a `make tune`.", ""]
    why = check["why"]  # "the default stays: ..." when it does
    lines += [f"Tuned parameters win: {why}." if check["beats_default"] else f"{why[:1].upper()}{why[1:]}.", ""]
    figures = check.get("check")
    if figures:
        lines += [f"At {figures['minutes']:g} of the final run's {figures['final_minutes']:g} minutes "
                  f"(margin {100 * figures['margin']:g} points):", "",
                  "| run | search val_accuracy | check val_accuracy | epochs |", "|---|---|---|---|",
                  f"| untuned recipe | | {figures['default']['val_accuracy']:.4f} | "
                  f"{figures['default']['epochs_run']} |"]
        lines += [f"| trial {c['trial']} | {c['search_value']:.4f} | {c['val_accuracy']:.4f} | {c['epochs_run']} |"
                  for c in figures["candidates"]]
        lines.append("")
    return lines


def importance_lines(study: optuna.Study) -> list[str]:
    found = importances(study)
    lines = ["## Parameter importance", ""]
    if found is None:
        return lines + ["Needs at least 3 finished (complete or pruned) trials with a common parameter and values that "
                        "differ.", ""]
    lines += ["fANOVA over the finished trials, each valued at its last reported accuracy (parameters only some "
              "trials sample, like momentum, are left out).", "", "| parameter | importance |", "|---|---|"]
    return lines + [f"| {name} | {value:.3f} |" for name, value in found.items()] + [""]


def top_trials_table(study: optuna.Study, top: int = 10) -> str:
    """The fidelity, the final check, the importances and the ``top`` complete trials by value as markdown, with
    the count of each trial state."""
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:top]
    names = sorted({name for t in done for name in recipe(t)})
    lines = [f"# Study {study.study_name}", ""]
    counts = count_states(study)
    lines += [f"{len(study.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), ""]
    lines += check_lines(study) + importance_lines(study)
    if not done:
        return "\n".join(lines + ["No complete trial yet.", ""])
    lines += [f"## Top {len(done)} trials by validation accuracy", ""]
    lines.append("| trial | val_accuracy | val_macro_f1 | seconds | " + " | ".join(names) + " |")
    lines.append("|" + "---|" * (4 + len(names)))
    for t in done:
        params = recipe(t)
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        lines.append(f"| {t.number} | {t.value:.4f} | {_fmt(t.user_attrs.get('val_macro_f1', ''))} | "
                     f"{_fmt(round(seconds)) if seconds is not None else ''} | "
                     + " | ".join(_fmt(params.get(n, "")) for n in names) + " |")
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {t.number}: {t.user_attrs.get('fail_reason', 'process died (heartbeat)')}" for t in failed]
    return "\n".join(lines) + "\n"


def write_report(competition: str, arch: str, storage: str | None = None, study: str | None = None) -> list[Path]:
    """Write the plots and the table for the study of ``competition`` and ``arch``; return the written paths."""
    slug = load_competition(competition).slug
    name = study or study_name(slug, arch)
    loaded = load_study(name, storage)
    out = settings.reports_dir(slug)
    written = [write_text(out / f"tune-{name}.md", top_trials_table(loaded))]
    complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for kind, plot in PLOTS.items():
        if not complete or (kind == "importances" and importances(loaded) is None):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            axes = plot(finished(loaded)) if kind == "importances" else plot(loaded)
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        written.append(save_figure(first.get_figure(), out / f"tune-{name}-{kind}.png"))
    plt.close("all")
    return written
