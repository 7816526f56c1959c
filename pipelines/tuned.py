"""Tuned settings and the config a training command runs: defaults < tuned parameters (only when they beat the
default recipe, or when asked) < ``NAME=VALUE`` settings.

The tuning package writes ``tuning/best-<slug>-<arch>.json`` through ``write_tuned``; ``make train`` reads it here.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_json
from competition.registry import load_competition
from pipelines.config import TrainConfig, parse_settings
from pipelines.runs import resolve_run


def make_config(competition: str, arch: str, pairs: list[str] | None = None, tuned: str = "auto",
                minutes: float | None = None) -> tuple[TrainConfig, str]:
    """Defaults < tuned parameters (when they won, or ``tuned="1"``) < ``NAME=VALUE`` settings < ``minutes`` (a
    budget the caller plans, e.g. a CV fold's); and a line saying which parameters are used: the default recipe, or
    the tuned ones and why (or why not).

    The competition is resolved once here: a folder path becomes absolute (runs then find it from anywhere), and
    the tuned parameters are looked up by its slug. So is a ``pseudo_labels`` run (see ``runs.resolve_run``).
    """
    found = load_competition(competition)
    if Path(competition).is_dir() and found.data_dir:
        competition = str(Path(competition).resolve())
    params, said = tuned_settings(found.slug, arch, tuned or "auto")
    given = parse_settings(pairs)
    config = TrainConfig(competition=competition, arch=arch).update(**params).update(**given)
    if minutes is not None:
        config = config.update(minutes=minutes)
    source = resolve_run(config.pseudo_labels) if config.pseudo_labels else None
    if source is not None and source.is_dir():  # a name under runs/ or a path from the project home, made absolute
        config = config.update(pseudo_labels=str(source.resolve()))
    if "epochs" in params and "epochs" not in given:
        config, note = fit_tuned_epochs(config, read_tuned(found.slug, arch) or {})
        said += note
    config, note = scale_caps_to_budget(config, chosen=set(params) | set(given))
    return config, said + note


def scale_caps_to_budget(config: TrainConfig, chosen: set[str]) -> tuple[TrainConfig, str]:
    """The default epoch cap and early-stopping patience are sized for the default budget; a longer budget gets
    them scaled by the ratio of the budgets (and a note saying so), so that the budget, not the cap, ends the run.
    Caps that were set or tuned are kept. Without this a 46-minute cnn run stopped at 60 epochs after 20 minutes."""
    default = TrainConfig()
    if not config.minutes or config.minutes <= default.minutes:
        return config, ""
    names = [name for name in ("epochs", "patience")
             if name not in chosen and getattr(config, name) == getattr(default, name)]
    return rescale_caps(config, names, default.minutes, "the default caps ({caps}) are for")


def fit_tuned_epochs(config: TrainConfig, record: dict) -> tuple[TrainConfig, str]:
    """The tuned ``epochs`` is a cap at the final budget the study checked; a run with another budget gets it scaled
    by the ratio of the budgets, so that it binds at the same share of the time (and a note saying so)."""
    tuned_for = (record.get("fidelity") or {}).get("final_minutes")
    if not tuned_for or not config.minutes or config.minutes == tuned_for:
        return config, ""
    return rescale_caps(config, ["epochs"], tuned_for, "{caps} was tuned for")


def rescale_caps(config: TrainConfig, names: list[str], sized_for: float, lead: str) -> tuple[TrainConfig, str]:
    """The caps ``names`` (epochs, patience) times this run's budget over the ``sized_for`` minutes they were set
    for, rounded up, and a note (``lead`` with ``{caps}``, the caps before) that says so."""
    if not names:
        return config, ""
    scaled = {name: max(1, math.ceil(getattr(config, name) * config.minutes / sized_for)) for name in names}
    caps = ", ".join(f"{name} {getattr(config, name)}" for name in names)
    return config.update(**scaled), (f"; {lead.format(caps=caps)} {sized_for:g} minutes, so "
                                     f"{', '.join(f'{k} {v}' for k, v in scaled.items())} for this run's "
                                     f"{config.minutes:g}")


# ------------------------------------------------------------------------------------------------ tuned settings
TUNED_MODES = ("auto", "1", "0")  # TUNED=: use when they beat the default (auto), always (1), never (0)


def read_tuned(slug: str, arch: str) -> dict | None:
    """The tuned-settings file a study wrote for this competition and arch (``tuning/best-<slug>-<arch>.json``)."""
    path = settings.best_params_path(slug, arch)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PipelineError(f"{path}: not valid JSON; delete it or rerun `make tune`") from None


def write_tuned(slug: str, arch: str, record: dict) -> Path:
    """Write the tuned-settings file atomically (the tuning package calls this; ``make train`` reads it)."""
    return write_json(settings.best_params_path(slug, arch), record)


def tuned_settings(slug: str, arch: str, mode: str = "auto") -> tuple[dict, str]:
    """The tuned settings ``make train`` should use, and one line saying what it did and why.

    ``auto`` uses them only when the study found that they beat the untuned recipe on the same split
    (``beats_default``); ``1`` uses them whenever they exist; ``0`` never.
    """
    if mode not in TUNED_MODES:
        raise PipelineError(f"TUNED={mode!r}: use 1 (always use tuned settings), 0 (never) or leave it unset")
    path = settings.best_params_path(slug, arch)
    if mode == "0":
        return {}, "train: the default recipe (TUNED=0: tuned parameters are not used)"
    record = read_tuned(slug, arch)
    if not record:
        return {}, f"train: the default recipe (no tuned parameters in {path}; `make tune` looks for some)"
    params = record.get("params", {})
    if mode == "1":
        return params, f"train: using tuned parameters from {path} (TUNED=1): {params}"
    if record.get("beats_default"):
        return params, (f"train: using tuned parameters from {path} (they beat the default recipe: "
                        f"{record.get('why', '')}): {params}")
    why = record.get("why") or "they did not beat the default"
    return {}, f"train: not using the tuned parameters in {path}: {why}; TUNED=1 uses them anyway"
