"""``make tune-report``: PNG plots of a study and a markdown table of its top trials, in ``reports/<slug>/``."""
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
from tuning.search import best_params  # noqa: E402
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


def top_trials_table(study: optuna.Study, top: int = 10) -> str:
    """The ``top`` complete trials by value as a markdown table, with the count of each trial state."""
    done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: -t.value)[:top]
    names = sorted({name for t in done for name in best_params(t)})
    lines = [f"# Study {study.study_name}", ""]
    counts = count_states(study)
    lines += [f"{len(study.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), ""]
    if not done:
        return "\n".join(lines + ["No complete trial yet.", ""])
    lines += [f"## Top {len(done)} trials by validation accuracy", ""]
    lines.append("| trial | val_accuracy | val_macro_f1 | seconds | " + " | ".join(names) + " |")
    lines.append("|" + "---|" * (4 + len(names)))
    for t in done:
        params = best_params(t)
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
        if kind == "importances" and len(complete) < 2:
            continue  # importances need at least two finished trials
        if not complete:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            axes = plot(loaded)
        first = axes.flat[0] if hasattr(axes, "flat") else axes
        written.append(save_figure(first.get_figure(), out / f"tune-{name}-{kind}.png"))
    plt.close("all")
    return written
