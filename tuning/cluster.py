"""A study's trials as tasks on a Dask cluster (``make tune SCHEDULER=...``, or ``WORKERS=N`` on a local one).

The client asks the study for each trial and sends it, with the search's settings, to a worker; the dataset's
arrays go to the workers once. The worker trains the trial against the same study through Optuna's
``DaskStorage``: the study's storage (``STORAGE=``, default ``tuning/studies.db``) is opened by the scheduler
process and reached over the connection every worker already has, so the workers need no shared filesystem, no
database server and no open port of their own; each epoch's report and the pruner's answer go that way. The
trial's files come back; the client writes them to ``runs/tune-<study>/trial-<n>/`` and tells the study the
result, so only the client ever finishes a trial.

Faults: a worker that dies mid-trial has its task run again on another worker, which continues the same trial
(Optuna keeps a trial's suggested values, so it has the same number and parameters): no trial is lost or counted
twice. The client records the heartbeat of the trials it has in flight (RDB storages), so a rerun after the client
itself was killed fails them and retries each once (``RetryHeartbeatStaleTrialCallback``), as for a killed local
process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
import warnings
from pathlib import Path
from uuid import uuid4

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState

from competition import settings
from competition.errors import PipelineError, first_line
from competition.registry import load_competition
from pipelines import cluster
from pipelines.fold import read_files, write_fold
from tuning.fidelity import reduce_dataset
from tuning.storage import drop_model_unless_best, make_pruner, make_sampler, open_storage

# DaskStorage is experimental since optuna 3.1 (only its interface may change); it is built again wherever it is
# unpickled (the scheduler, which is this process for a local cluster), so the warning is filtered once, here
warnings.filterwarnings("ignore", "DaskStorage is experimental", optuna.exceptions.ExperimentalWarning)
TOKEN = "kip:cluster-token"  # a study attribute: proves the scheduler opened the same study as this machine


def run_on_cluster(search, dataset=None, say=print) -> None:
    """Run ``search.options.trials`` trials (or until its deadline; at least one) on the cluster of the open
    ``cluster_session`` (``kip tune`` opens one), else on one opened here for ``options.scheduler``/``workers``."""
    client = _current_client(search.options.scheduler)
    if client is not None:
        return _run(search, client, dataset, say)
    with cluster.cluster_session(search.options.scheduler, search.options.workers, say) as opened:
        return _run(search, opened, dataset, say)


def _current_client(scheduler: str | None):
    """The open client of the same scheduler (or of a local cluster, without one), else None."""
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    address = cluster.scheduler_address(scheduler)
    return client if (client.scheduler.address == address if address else client.cluster is not None) else None


def _run(search, client, dataset, say) -> None:
    from pipelines.data import load_dataset

    o, config = search.options, search.config
    cluster.refuse_local_files(config)
    competition = load_competition(config.competition)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    study = search.open()
    with warnings.catch_warnings():  # experimental: only its interface may change
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # a killed client's trials: failed, each retried once (asked again below)
    remote = shared_storage(client, study, o.storage, o.heartbeat)
    # a worker has no competition files: the slug is all it needs with the arrays; one line per epoch at most
    slug = competition.slug
    search = dataclasses.replace(search, config=config.update(competition=slug, verbose=min(config.verbose, 2) and 2))
    # the trials' data, at the study's fidelity, goes to the workers once
    dispatch = cluster.Dispatch(client, run_trial, reduce_dataset(dataset, search.fidelity, config.seed), say)
    trials, asked, beat = {}, 0, Heartbeat(study, o.heartbeat)
    folder = settings.runs_dir() / f"tune-{search.name}"
    try:
        while True:
            while len(dispatch.tasks) < cluster.slots(client) and _more(search, asked):
                with warnings.catch_warnings():  # the heartbeat is kept below, not by Study.optimize
                    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
                    trial = study.ask()
                asked += 1
                trials[trial.number] = trial
                beat([trial._trial_id], now=True)  # from now on, a rerun finds it stale if this client dies
                dispatch.submit(f"trial {trial.number}", search, remote, trial._trial_id)
                say(f"tune: trial {trial.number} sent to the cluster")
            if not dispatch.tasks:
                break
            for _, _, outcome in dispatch.results(tick=lambda: beat(t._trial_id for t in trials.values())):
                trial = trials.pop(outcome["number"])
                _finish(study, trial, outcome, folder, say)
                break  # ask for the next trial as soon as a worker is free
    finally:
        with contextlib.suppress(Exception):  # the scheduler may be gone: what the run says matters more
            client.run_on_scheduler(_forget_storage, name=remote.name)


def _more(search, asked: int) -> bool:
    """Whether to ask for another trial: the budget's trials and deadline (at least one trial runs)."""
    o = search.options
    if o.trials is not None and asked >= o.trials:
        return False
    return asked == 0 or search.deadline is None or time.time() < search.deadline


def _finish(study, trial, outcome: dict, folder: Path, say) -> None:
    """Write the trial's files, point its ``run_dir`` here, tell the study; keep the model only of the best."""
    run_dir = folder / f"trial-{trial.number:04d}"
    if outcome["files"]:
        write_fold(run_dir, outcome["files"])
    state = TrialState[outcome["state"]]
    if state == TrialState.COMPLETE:
        trial.set_user_attr("run_dir", str(run_dir))
        study.tell(trial, outcome["value"])
    else:
        study.tell(trial, state=state)
    say(f"tune: trial {trial.number} {state.name.lower()}"
        + (f": val_accuracy={outcome['value']:.4f}" if state == TrialState.COMPLETE else "")
        + (f": {outcome['reason']}" if outcome.get("reason") else ""))
    drop_model_unless_best(study, trial.number, state == TrialState.COMPLETE, run_dir)


class Heartbeat:
    """The heartbeat of the trials in flight, recorded by the client every ``interval`` s (RDB storages)."""

    def __init__(self, study, interval: int):
        self.storage, self.last = study._storage, 0.0
        self.interval = getattr(self.storage, "get_heartbeat_interval", lambda: None)() and interval

    def __call__(self, trial_ids, now: bool = False) -> None:
        if not self.interval or (not now and time.monotonic() - self.last < self.interval / 2):
            return
        for trial_id in trial_ids:
            self.storage.record_heartbeat(trial_id)
        if not now:
            self.last = time.monotonic()


def shared_storage(client, study, storage: str | None, heartbeat: int):
    """The study's storage opened by the scheduler, as a ``DaskStorage`` the workers reach through it; refused in
    one line when the scheduler cannot open it or opens another study than this machine's (a file path that is
    not the same file there)."""
    from optuna_integration.dask import DaskStorage

    where = storage or "the default tuning/studies.db"
    try:
        remote = DaskStorage(open_storage(storage, heartbeat), client=client)
        there = remote.get_study_id_from_name(study.study_name)
    except Exception as err:
        there, reason = None, first_line(err)
    else:
        token = uuid4().hex
        study._storage.set_study_system_attr(study._study_id, TOKEN, token)
        reason = None if remote.get_study_system_attrs(there).get(TOKEN) == token else "another study"
    if reason is not None:
        raise PipelineError(f"STORAGE={where}: the scheduler at {client.scheduler.address} cannot open this "
                            f"machine's study ({reason}); run `dask scheduler` on this machine, or give a "
                            f"STORAGE=postgresql://... URL that it and this machine both reach")
    return remote


def _forget_storage(dask_scheduler, name: str) -> None:
    extension = dask_scheduler.extensions.get("optuna")
    if extension is not None:
        extension.storages.pop(name, None)


def run_trial(dataset, search, storage, trial_id: int) -> dict:
    """The task a worker runs: the trial ``trial_id`` of the study, on the worker's threads, reporting each epoch
    through ``storage``; returns its state, value, number and files (the client tells the study)."""
    from pipelines.cluster_worker import use_worker_threads
    from tuning.objective import make_objective

    use_worker_threads()
    number = storage.get_trial_number_from_id(trial_id)
    o = search.options
    study = optuna.load_study(study_name=search.name, storage=storage, pruner=make_pruner(o.pruner),
                              sampler=make_sampler(search.config.seed + number, search.startup))
    # the scheduler's cache of an RDB study learns of trials others created only when it reads them: this trial
    # was created by the client, and a fixed (enqueued) parameter is stored without the sampler reading anything
    study.get_trials(deepcopy=False)
    trial = optuna.Trial(study, trial_id)
    with tempfile.TemporaryDirectory(prefix="kip-trial-") as tmp:
        objective = make_objective(search.config, search.space, dataset, Path(tmp), search.fidelity, search.deadline)
        value, state, reason = None, TrialState.COMPLETE, None
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as err:  # the objective recorded why in the trial's fail_reason too
            state, reason = TrialState.FAIL, first_line(err)
        folder = Path(tmp) / f"trial-{number:04d}"
        files = read_files(folder) if folder.is_dir() else {}
    return {"number": number, "state": state.name, "value": value, "reason": reason, "files": files}
