"""CV, compete and tuning on a real Dask cluster on loopback (``dask scheduler`` and ``dask worker`` processes, tiny
data), faults included, and the cluster's bad input."""
import importlib.metadata
import json
import os
import re
import signal
import threading

import pytest
from optuna.trial import TrialState

from competition.errors import PipelineError
from pipelines import cluster
from pipelines.config import TrainConfig
from pipelines.cv import run_cv
from pipelines.fold import fold_done
from pipelines.probabilities import read_probabilities
from submissions.compete_plan import RESERVE
from tests.conftest import QUICK_CV
from tests.loopback import LoopbackCluster, free_port, started_folds, wait_for
from tests.test_makefile import make_dry_run

VERSION = importlib.metadata.version("kaggle-image-pipeline")


def quiet(line: str) -> None:
    pass


def layout(cv_dir) -> set[str]:
    """Every file of a CV folder by relative path (a TensorBoard event file by its folder: its name has a time)."""
    return {str(p.relative_to(cv_dir).parent / "<events>") if p.name.startswith("events.out.") else
            str(p.relative_to(cv_dir)) for p in cv_dir.rglob("*") if p.is_file() and p.name != ".lock"}


class Loopback:
    """The module's cluster: a scheduler and two gated workers (the gate open unless a test closes it)."""

    def __init__(self, folder):
        self.gate = folder / "gate"
        self.gate.mkdir(parents=True)
        (self.gate / "go").touch()
        self.cluster = LoopbackCluster(folder / "dask", workers=2, gate=self.gate)
        self.client = self.cluster.client(2)

    def kill_one_inside(self, what: str) -> threading.Thread:
        """Close the gate; once both workers are inside a task, SIGKILL the first one's worker process (its nanny
        starts another), then open the gate. Returns the thread that does it; ``started`` counts from here."""
        (self.gate / "go").unlink()
        self.before = len(started_folds(self.gate))

        def kill():
            wait_for(lambda: self.started() == 2, f"both workers inside a {what}")
            os.kill(started_folds(self.gate)[self.before][1], signal.SIGKILL)
            (self.gate / "go").touch()

        thread = threading.Thread(target=kill, daemon=True)
        thread.start()
        return thread

    def started(self) -> int:
        return len(started_folds(self.gate)) - self.before

    def wait_for_two_workers(self) -> None:
        wait_for(lambda: cluster.capable_workers(self.client) == 2, "two workers that take our tasks")


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    found = Loopback(tmp_path_factory.mktemp("loopback"))
    yield found
    cluster.close_client(found.client)
    found.cluster.close()


def test_a_worker_with_another_version_of_the_package_is_refused_in_one_line(loopback):
    with pytest.raises(PipelineError, match=rf"^worker tcp://127\.0\.0\.1:\d+: kaggle-image-pipeline {VERSION}, "
                                            r"this machine has 9\.9; install the same version on every worker"):
        cluster.check_versions(loopback.client, expected="9.9")


def test_each_workers_tensorflow_uses_the_threads_the_worker_was_started_with(loopback):
    import tensorflow as tf

    found = loopback.client.run(tf.config.threading.get_intra_op_parallelism_threads)  # run on each worker
    assert list(found.values()) == [1, 1]  # `dask worker --nthreads 1`, not the machine's cores


def test_compete_on_the_cluster_plans_its_folds_side_by_side_and_sends_them_there(tiny, home, loopback,
                                                                                  monkeypatch):
    import pipelines.cv
    from submissions.compete import compete

    class Sent(Exception):
        pass

    def run_cv(config, **kwargs):  # the CV itself on a cluster: the test below
        raise Sent(config.minutes, kwargs["client"])

    monkeypatch.setattr(pipelines.cv, "run_cv", run_cv)
    lines = []
    with pytest.raises(Sent) as sent:
        compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append, client=loopback.client,
                clock=lambda: 1000.0, fold_overhead=lambda *_: 60.0)  # no time passes, a fold predicts for a minute:
    # the plan, not the machine's speed, sets the minutes; the 2 folds side by side share one round
    assert any(line.startswith("compete: cnn: 2 folds of 8.7 minutes of training (+1.0 minutes each predicting")
               and line.endswith("2 at a time (10.0 minutes left)") for line in lines)
    assert sent.value.args == (pytest.approx(10 * (1 - RESERVE) - 1.0), loopback.client)


def test_a_cv_with_a_worker_killed_mid_fold_is_complete_and_laid_out_as_a_local_one(tiny, home, loopback, tiny_cv):
    _, local = tiny_cv  # the same tiny competition and settings, trained in this process
    loopback.wait_for_two_workers()
    killer, lines = loopback.kill_one_inside("fold"), []
    remote = run_cv(TrainConfig(competition=tiny, **QUICK_CV), folds=2, progress=False, on_fold=lines.append,
                    client=loopback.client)
    killer.join()
    assert loopback.started() == 3  # the killed fold ran once more, and nothing else did
    assert "cv: folds 1, 2 of 2 sent to the cluster" in lines
    assert layout(remote.cv_dir) == layout(local.cv_dir)
    assert {"fold-1/model.keras", "fold-2/test_predictions.npz", "fold-1/history.csv"} <= layout(remote.cv_dir)
    assert all(fold_done(remote.cv_dir / f"fold-{k}", True) for k in (1, 2))
    here, there = (read_probabilities(r.cv_dir / "oof_predictions.npz") for r in (local, remote))
    assert there.ids == here.ids and there.folds.tolist() == here.folds.tolist()
    assert there.labels.tolist() == here.labels.tolist()
    for k in (1, 2):
        assert read_probabilities(remote.cv_dir / f"fold-{k}" / "val_predictions.npz").ids == \
            read_probabilities(local.cv_dir / f"fold-{k}" / "val_predictions.npz").ids
    metrics = json.loads((remote.cv_dir / "metrics.json").read_text())
    assert metrics["folds"] == 2 and metrics["labelled"] == 48


def test_a_study_on_two_workers_one_killed_mid_trial_loses_no_trial_and_repeats_none(tiny, home, loopback):
    from tuning.fidelity import CheckOptions
    from tuning.search import TuneOptions, best_params_path, tune
    from tuning.space import build_space

    loopback.wait_for_two_workers()
    killer = loopback.kill_one_inside("trial")
    study = tune(TrainConfig(competition=tiny, verbose=0), build_space("cnn", ["epochs=1", "batch_size=8"]),
                 TuneOptions(trials=3, scheduler=loopback.cluster.address, check=CheckOptions(top=0)))
    killer.join()
    assert loopback.started() == 4  # 3 trials, and the killed one once more
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert trials[0].user_attrs["start"] == "make train's defaults"  # the enqueued recipe ran as trial 0
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3
    folder = home / "runs" / "tune-tiny-cnn"
    assert sorted(p.name for p in folder.iterdir()) == ["trial-0000", "trial-0001", "trial-0002"]  # written here
    assert all((folder / f"trial-{n:04d}" / "metrics.json").exists() for n in range(3))
    ran = json.loads((folder / "trial-0000" / "config.json").read_text())  # at the study's fidelity, there too
    assert (ran["train_size"], ran["minutes"]) == (18, 3)  # half of train, a sixth of the final 18 minutes
    best = study.best_trial
    assert best.user_attrs["run_dir"] == str(folder / f"trial-{best.number:04d}")
    assert (folder / f"trial-{best.number:04d}" / "model.keras").exists()
    record = json.loads(best_params_path(tiny, "cnn").read_text())  # by the final check, on this machine
    assert record["study"] == "tiny-cnn" and "no final check was asked for" in record["why"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_rerun_after_the_client_was_killed_retries_the_trial_it_left_running(tiny, home, loopback):
    import time

    import optuna

    from tuning.cluster import Heartbeat
    from tuning.fidelity import CheckOptions, Fidelity
    from tuning.search import TuneOptions, tune
    from tuning.space import build_space
    from tuning.storage import open_study

    space = build_space("cnn", ["epochs=1", "batch_size=8"])
    study = open_study("tiny-cnn", heartbeat=1)  # what a client killed mid-trial left: a running trial, its beat
    study.set_user_attr("fidelity", Fidelity().resolve(TrainConfig().minutes).identity())
    killed = study.ask()
    space.sample(killed)
    Heartbeat(study, 1)([killed._trial_id], now=True)
    time.sleep(4.5)  # the grace period (3 heartbeats) passes, counted in SQLite's whole seconds
    after = tune(TrainConfig(competition=tiny, verbose=0), space,
                 TuneOptions(trials=1, heartbeat=1, scheduler=loopback.cluster.address,
                             check=CheckOptions(top=0))).get_trials()
    assert [t.state for t in after] == [TrialState.FAIL, TrialState.COMPLETE]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(after[1]) == killed.number
    assert after[1].params == after[0].params


def test_a_scheduler_that_opens_another_study_is_refused_in_one_line(home, loopback):
    import optuna

    from tuning.cluster import shared_storage
    from tuning.storage import open_study

    study = open_study("s", f"sqlite:///{home / 'a.db'}")
    other = f"sqlite:///{home / 'b.db'}"
    optuna.create_study(study_name="s", storage=other)  # the same name in another file: not the same study
    expected = (rf"^STORAGE={re.escape(other)}: the scheduler at tcp://127\.0\.0\.1:\d+ cannot open this machine's "
                r"study \(another study\); run `dask scheduler` on this machine, or give a STORAGE=postgresql://")
    with pytest.raises(PipelineError, match=expected):
        shared_storage(loopback.client, study, other, 30)


@pytest.mark.slow
def test_a_cluster_that_loses_every_worker_waits_then_fails_and_a_rerun_continues(tiny, home, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 1.0)
    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.2)
    gate = tmp_path / "gate"
    gate.mkdir()
    loop = LoopbackCluster(tmp_path / "dask", workers=1, gate=gate, gate_from=2)  # the 2nd fold waits at the gate
    config, lines = TrainConfig(competition=tiny, **QUICK_CV), []

    def kill_the_worker_inside_the_second_fold():
        wait_for(lambda: len(started_folds(gate)) == 2 and any(home.glob("runs/cv-*/fold-*/metrics.json")),
                 "the first fold saved and the second started")
        loop.kill_worker(loop.workers[0])

    threading.Thread(target=kill_the_worker_inside_the_second_fold, daemon=True).start()
    try:
        client = loop.client(1)
        try:
            with pytest.raises(PipelineError, match=r"^tcp://127\.0\.0\.1:\d+: no worker for 1 s; what finished is "
                                                    r"saved: start `dask worker tcp://127\.0\.0\.1:\d+` and run the "
                                                    r"same command again to continue$"):
                run_cv(config, folds=2, progress=False, on_fold=lines.append, client=client)
        finally:
            cluster.close_client(client)
        assert any("no worker can take the work; waiting up to 1 s" in line for line in lines)
        [cv] = (home / "runs").glob("cv-*")
        [saved] = [k for k in (1, 2) if fold_done(cv / f"fold-{k}", True)]
        before = (cv / f"fold-{saved}" / "metrics.json").read_bytes()
        assert not (cv / f"fold-{3 - saved}").exists() and not (cv / "metrics.json").exists()

        (gate / "go").touch()
        loop.start_worker()
        client = loop.client(1)
        try:  # the same command again: only the fold that did not come back is sent
            result = run_cv(config, folds=2, progress=False, on_fold=lines.append, client=client)
        finally:
            cluster.close_client(client)
    finally:
        loop.close()
    assert result.cv_dir == cv and (cv / f"fold-{saved}" / "metrics.json").read_bytes() == before
    assert (cv / "metrics.json").exists() and len(started_folds(gate)) == 3


@pytest.mark.parametrize("command, args, message", [
    ("cv", ["--workers", "0"], "WORKERS=0: give 1 (train in this process) or more (a local Dask cluster"),
    ("tune", ["--workers", "0"], "WORKERS=0: give 1 (train in this process) or more (a local Dask cluster"),
    ("cv", ["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"],
     "SCHEDULER=tcp://127.0.0.1:1 and WORKERS=2: a scheduler's workers are the `dask worker` processes"),
    ("cv", ["--scheduler", "unreachable"], "SCHEDULER=tcp://127.0.0.1:{port}: no Dask scheduler answers there ("),
    ("tune", ["--scheduler", "unreachable"], "SCHEDULER=tcp://127.0.0.1:{port}: no Dask scheduler answers there ("),
    ("cv", ["--env", "unreachable"], "SCHEDULER=tcp://127.0.0.1:{port}: no Dask scheduler answers there ("),
])
def test_bad_cluster_settings_are_one_line_before_any_work(tiny, home, capsys, monkeypatch, command, args, message):
    from kip import main

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    port = free_port()  # nothing listens there
    if args[0] == "--env":
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{port}")
        args = []
    args = [f"tcp://127.0.0.1:{port}" if a == "unreachable" else a for a in args]
    extra = ["--folds", "2"] if command == "cv" else ["--trials", "1"]
    assert main([command, "--competition", tiny, *extra, "--set", "epochs=1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + message.format(port=port)) and "\n" not in err
    assert not (home / "runs").exists() and not (home / "tuning").exists()


def test_settings_that_name_a_local_file_are_refused_for_a_cluster(tiny, home):
    (home / "runs" / "x").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"^pseudo_labels=runs/x: a file on this machine, which the cluster's "
                                            r"workers cannot read; run this in this process"):
        run_cv(TrainConfig(competition=tiny, pseudo_labels="runs/x", **QUICK_CV), folds=2, client=object())


def test_make_passes_the_scheduler_and_workers_to_cv_tune_and_compete():
    cv = make_dry_run("cv", "COMPETITION=no-such-competition-xyz", "SCHEDULER=tcp://h:8786")
    tune = make_dry_run("tune", "COMPETITION=no-such-competition-xyz", "SCHEDULER=tcp://h:8786")
    compete = make_dry_run("compete", "COMPETITION=no-such-competition-xyz", "MINUTES=30", "WORKERS=3")
    assert "--scheduler 'tcp://h:8786' --workers 1" in cv and "--scheduler 'tcp://h:8786' --workers 1" in tune
    assert "--workers 3" in compete
