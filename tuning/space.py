"""The search space: a dict of TrainConfig field name -> Optuna distribution, per architecture.

Only names that ``TrainConfig`` has are searched, so a new training setting becomes searchable by adding one
line to ``COMMON`` (or an arch's entry in ``ARCH_SPACES``). Any entry can be fixed or narrowed from the command line
(``--space learning_rate=1e-4:1e-2``, ``--space optimizer=adam,adamw``, ``--space epochs=10``) or from a TOML/JSON
file with the same names, and ``--set NAME=VALUE`` fixes a setting too.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import optuna
from optuna.distributions import BaseDistribution
from optuna.distributions import CategoricalDistribution as Choice
from optuna.distributions import FloatDistribution as Float
from optuna.distributions import IntDistribution as Int

from competition.errors import PipelineError
from pipelines.config import TrainConfig, field_types, parse_bool

# Ordered: a parameter that others depend on (optimizer, schedule) comes first. Every range holds make train's
# default, so trial 0 is the untuned recipe itself.
COMMON: dict[str, BaseDistribution] = {
    # adam with weight decay is adamw in Keras 3 (decoupled decay in every optimizer), so one of the two is searched
    "optimizer": Choice(["adamw", "sgd", "rmsprop"]),
    "learning_rate": Float(1e-4, 3e-2, log=True),
    "momentum": Float(0.8, 0.99),
    "weight_decay": Float(1e-5, 1e-1, log=True),
    # the final run's cap, as make train reads it: its time budget plans the epochs and this only binds when lower
    # (then the schedule is fitted to it: a shorter, completed run); a trial scales it with its budget
    "epochs": Int(10, 60, log=True),
    "batch_size": Choice([32, 64, 128]),
    "schedule": Choice(["cosine", "linear", "onecycle"]),
    "warmup_epochs": Float(0.0, 3.0),
    "dropout_rate": Float(0.0, 0.5),
    "label_smoothing": Float(0.0, 0.2),
    "augment_strength": Float(0.0, 1.5),
    # helps on colour images (GIC +2 to +4 points), nothing on greyscale: a per-competition choice, so searched
    "whiten": Choice([False, True]),
}

ARCH_SPACES: dict[str, dict[str, BaseDistribution]] = {
    "cnn": COMMON,
    # Slower per step and already regularised by batch norm: larger batches, lighter dropout.
    "resnet10": {**COMMON, "batch_size": Choice([64, 128]), "dropout_rate": Float(0.0, 0.3)},
    "mobilenetv2": {name: dist for name, dist in COMMON.items() if name != "whiten"},  # its stem is pretrained
}

# A parameter is only sampled when the one it depends on has one of these values (what make_optimizer and the
# learning-rate schedule read: onecycle has its own warm-up).
CONDITIONS: dict[str, tuple[str, tuple]] = {
    "momentum": ("optimizer", ("sgd", "rmsprop")),
    "warmup_epochs": ("schedule", ("cosine", "linear", "constant")),
}
# Options of the untuned recipe that help on some data and not on others (whitening: GIC's colour images +2 to +4
# points, greyscale digits nothing). A new study tries each one on top of trial 0's recipe as its next trial, so a
# choice the random start-up may never pair with a good optimizer is measured from the start.
TRY_EARLY: dict[str, object] = {"whiten": True}
# The budget is not searched: FIDELITY= sets a trial's, SET="minutes=..." the final run's.
NOT_SEARCHABLE = {"minutes": "the time budget is not a setting to search: FIDELITY=\"minutes=...\" sets a trial's, "
                             "SET=\"minutes=...\" the final run's"}


@dataclasses.dataclass
class SearchSpace:
    """What a study searches (``params``), what it holds fixed, and what TrainConfig cannot take yet."""

    params: dict[str, BaseDistribution]
    fixed: dict[str, object] = dataclasses.field(default_factory=dict)
    unsupported: list[str] = dataclasses.field(default_factory=list)

    def sample(self, trial: optuna.Trial) -> dict:
        """Suggest every searched parameter (skipping those whose condition does not hold), plus the fixed ones."""
        values = dict(self.fixed)
        for name, dist in self.params.items():
            if applies(name, values):
                values[name] = suggest(trial, name, dist)
        return values

    def describe(self) -> str:
        """The space as a few aligned lines, printed when tuning starts."""
        lines = [f"  {name:<18}{describe(dist)}" + (f"   (only when {CONDITIONS[name][0]} in "
                                                     f"{', '.join(CONDITIONS[name][1])})" if name in CONDITIONS else "")
                 for name, dist in self.params.items()]
        lines += [f"  {name:<18}fixed: {value}" for name, value in self.fixed.items()]
        if self.unsupported:
            lines.append(f"  not searched (TrainConfig has no such field): {', '.join(self.unsupported)}")
        return "\n".join(lines)


def applies(name: str, values: dict) -> bool:
    """Whether a parameter is searched given the values chosen so far (its CONDITIONS entry; a setting not chosen
    yet counts with TrainConfig's default)."""
    condition = CONDITIONS.get(name)
    return not condition or values.get(condition[0], _default(condition[0])) in condition[1]


def starting_point(space: SearchSpace, config: TrainConfig) -> dict:
    """The config's own values of the searched parameters, clipped into their ranges (a choice the space does not
    offer is left to the sampler): the recipe ``make train`` uses untuned, as a study's first trial."""
    values: dict = {}
    settings = {**dataclasses.asdict(config), **space.fixed}
    for name, dist in space.params.items():
        if not applies(name, {**settings, **values}):
            continue
        value = settings[name]
        if isinstance(dist, Choice):
            if value in dist.choices:
                values[name] = value
        else:
            values[name] = type(dist.low)(min(max(value, dist.low), dist.high))
    return values


def early_tries(space: SearchSpace, start: dict) -> list[dict]:
    """Trial 0's recipe with each ``TRY_EARLY`` option turned on, for the options the space searches."""
    return [{**start, name: value} for name, value in TRY_EARLY.items()
            if name in space.params and value in getattr(space.params[name], "choices", ())
            and start.get(name) != value]


def departures(space: SearchSpace, config: TrainConfig, start: dict) -> list[str]:
    """The searched settings whose value in ``start`` is not the config's own: clipped into a range, or a choice the
    space does not offer. Empty when the starting point is exactly the untuned recipe."""
    chosen = {**dataclasses.asdict(config), **space.fixed, **start}
    return sorted(name for name in space.params
                  if applies(name, chosen) and start.get(name) != getattr(config, name))


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution):
    """One ``trial.suggest_*`` call for a distribution."""
    if isinstance(dist, Float):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, Int):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    return trial.suggest_categorical(name, list(dist.choices))


def describe(dist: BaseDistribution) -> str:
    if isinstance(dist, Choice):
        return "choice: " + ", ".join(str(c) for c in dist.choices)
    kind = "int" if isinstance(dist, Int) else "float"
    return f"{kind} {dist.low:g} .. {dist.high:g}" + (" (log)" if dist.log else "")


def _default(name: str):
    return getattr(TrainConfig(), name, None)


def _typed(name: str, value, kind: type):
    if isinstance(value, str) and kind is not str:
        try:
            if kind is bool:
                return parse_bool(value)
            return kind(float(value)) if kind is int and "e" in value.lower() else kind(value)
        except ValueError:
            raise PipelineError(f"search space: {name}={value!r}: {name} needs a {kind.__name__}") from None
    return kind(value)


def parse_entry(name: str, spec, base: BaseDistribution | None, kind: type):
    """One override -> a distribution, or a plain value when it fixes the setting.

    ``"a,b"`` or a list: a choice; ``"lo:hi"`` (optionally ``:log``/``:linear``) or ``{low, high, log}``: a range of
    the same kind as before; anything else: fixed.
    """
    if isinstance(spec, dict):
        spec = f"{spec['low']}:{spec['high']}" + (":log" if spec.get("log") else ":linear" if "log" in spec else "")
    if isinstance(spec, list):
        return Choice([_typed(name, v, kind) for v in spec])
    if isinstance(spec, str) and "," in spec:
        return Choice([_typed(name, v.strip(), kind) for v in spec.split(",") if v.strip()])
    if isinstance(spec, str) and ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("log", "linear")):
            raise PipelineError(f"search space: {name}={spec!r}: use LOW:HIGH, LOW:HIGH:log or LOW:HIGH:linear")
        if kind not in (int, float):
            raise PipelineError(f"search space: {name} is a {kind.__name__}; give choices as a,b,c")
        low, high = _typed(name, parts[0], kind), _typed(name, parts[1], kind)
        log = parts[2] == "log" if len(parts) == 3 else bool(getattr(base, "log", False)) and low > 0
        if low > high or (log and low <= 0):
            raise PipelineError(f"search space: {name}={spec!r}: need LOW <= HIGH (and LOW > 0 on a log scale)")
        return (Int if kind is int else Float)(low, high, log=log)
    return _typed(name, spec, kind)


def read_space_file(path: Path) -> dict:
    """A TOML or JSON file of overrides, ``name = value``; a TOML file may put them under ``[space]``."""
    try:
        data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read the search space ({err}); use TOML or JSON name = value") from None
    return data.get("space", data) if isinstance(data, dict) else {}


def build_space(arch: str, overrides: list[str] | dict | None = None, fixed: dict | None = None) -> SearchSpace:
    """The space for ``arch`` narrowed by ``overrides`` (``NAME=SPEC`` strings or file paths, or a dict) and with
    the settings in ``fixed`` (for example from ``--set``) taken out of the search."""
    types = field_types()
    base = dict(ARCH_SPACES.get(arch, COMMON))
    entries: dict = {}
    if isinstance(overrides, dict):
        entries.update(overrides)
    else:
        for item in overrides or []:
            name, sep, spec = item.partition("=")
            if sep:
                entries[name.strip()] = spec.strip()
            elif Path(item).is_file():
                entries.update(read_space_file(Path(item)))
            else:
                raise PipelineError(f"search space: '{item}' is neither NAME=SPEC nor a TOML/JSON file")
    space = SearchSpace(params={}, fixed={})
    for name in list(base) + [n for n in entries if n not in base]:
        if name in NOT_SEARCHABLE and name in entries:
            raise PipelineError(f"search space: {name}: {NOT_SEARCHABLE[name]}")
        if name not in types:
            if name in entries:
                raise PipelineError(f"search space: unknown setting '{name}'; known: {', '.join(sorted(types))}")
            space.unsupported.append(name)
            continue
        value = parse_entry(name, entries[name], base.get(name), types[name]) if name in entries else base[name]
        if isinstance(value, BaseDistribution) and not value.single():
            space.params[name] = value
        else:
            space.fixed[name] = value.choices[0] if isinstance(value, Choice) else (
                value.low if isinstance(value, (Int, Float)) else value)
    for name, value in (fixed or {}).items():
        if name in space.params or name in space.fixed:  # other settings stay in the config, not in the space
            space.params.pop(name, None)
            space.fixed[name] = value
    return space


def check_compatible(study: optuna.Study, space: SearchSpace) -> None:
    """A resumed study must keep each parameter's kind and choices (Optuna refuses otherwise); ranges may change."""
    seen: dict[str, BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        seen.update(trial.distributions)
    for name, dist in space.params.items():
        if name in seen:
            try:
                optuna.distributions.check_distribution_compatibility(seen[name], dist)
            except ValueError:
                raise PipelineError(
                    f"study {study.study_name} searched {name} as {describe(seen[name])}, now {describe(dist)}; "
                    "keep the choices or start a new study with --study NAME (STUDY=NAME)") from None
