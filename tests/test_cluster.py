"""CV and compete on a real Dask cluster on loopback (``dask scheduler`` and ``dask worker`` processes, tiny data),
faults included, and the cluster's bad input."""
import importlib.metadata
import json
import os
import signal
import threading

import pytest

from competition.errors import PipelineError
from pipelines import cluster
from pipelines.config import TrainConfig
from pipelines.cv import run_cv
from pipelines.fold import fold_done
from pipelines.probabilities import read_probabilities
from tests.loopback import LoopbackCluster, free_port, started_folds, wait_for
from tests.test_makefile import make_dry_run

QUICK = dict(epochs=1, batch_size=8, minutes=0, verbose=0)
VERSION = importlib.metadata.version("kaggle-image-pipeline")


def quiet(line: str) -> None:
    pass


def layout(cv_dir) -> set[str]:
    """Every file of a CV folder by relative path (a TensorBoard event file by its folder: its name has a time)."""
    return {str(p.relative_to(cv_dir).parent / "<events>") if p.name.startswith("events.out.") else
            str(p.relative_to(cv_dir)) for p in cv_dir.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    found = LoopbackCluster(tmp_path_factory.mktemp("dask"), workers=2)
    client = found.client(2)
    yield client
    cluster.close_client(client)
    found.close()


def test_a_cv_on_the_cluster_is_laid_out_and_aligned_as_a_local_one(tiny, home, loopback):
    config = TrainConfig(competition=tiny, **QUICK)
    local = run_cv(config, folds=2, progress=False, on_fold=quiet)
    lines = []
    remote = run_cv(config, folds=2, progress=False, on_fold=lines.append, client=loopback)
    assert remote.cv_dir != local.cv_dir and "cv: folds 1, 2 of 2 sent to the cluster" in lines
    assert layout(remote.cv_dir) == layout(local.cv_dir)
    assert {"fold-1/model.keras", "fold-2/test_predictions.npz", "fold-1/history.csv"} <= layout(remote.cv_dir)
    here, there = (read_probabilities(r.cv_dir / "oof_predictions.npz") for r in (local, remote))
    assert there.ids == here.ids and there.folds.tolist() == here.folds.tolist()
    assert there.labels.tolist() == here.labels.tolist()
    for k in (1, 2):
        assert read_probabilities(remote.cv_dir / f"fold-{k}" / "val_predictions.npz").ids == \
            read_probabilities(local.cv_dir / f"fold-{k}" / "val_predictions.npz").ids
    metrics = json.loads((remote.cv_dir / "metrics.json").read_text())
    assert metrics["folds"] == 2 and metrics["labelled"] == 48


def test_compete_on_the_cluster_plans_its_folds_side_by_side(tiny, home, loopback):
    from submissions.compete import compete

    lines = []
    made, estimate, _ = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append,
                                client=loopback)
    assert made.path.exists() and 0 <= estimate <= 1
    assert any(line.startswith("compete: cnn: 2 folds of 8.8 minutes, 2 at a time") for line in lines)


def test_a_worker_with_another_version_of_the_package_is_refused_in_one_line(loopback):
    with pytest.raises(PipelineError, match=rf"^worker tcp://127\.0\.0\.1:\d+: kaggle-image-pipeline {VERSION}, "
                                            r"this machine has 9\.9; install the same version on every worker"):
        cluster.check_versions(loopback, expected="9.9")


def test_a_worker_killed_mid_fold_leaves_a_complete_cv(tiny, home, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    loop = LoopbackCluster(tmp_path / "dask", workers=2, gate=gate)
    client = loop.client(2)

    def kill_one_inside_its_fold():
        wait_for(lambda: len(started_folds(gate)) == 2, "both workers inside a fold")
        os.kill(started_folds(gate)[0][1], signal.SIGKILL)  # the worker process (its nanny starts another)
        (gate / "go").touch()

    killer = threading.Thread(target=kill_one_inside_its_fold, daemon=True)
    killer.start()
    try:
        result = run_cv(TrainConfig(competition=tiny, **QUICK), folds=2, progress=False, on_fold=quiet, client=client)
    finally:
        cluster.close_client(client)
        loop.close()
    killer.join()
    assert len(started_folds(gate)) == 3  # the killed fold ran once more, and nothing else did
    assert sorted(p.name for p in result.cv_dir.glob("fold-*")) == ["fold-1", "fold-2"]
    assert all(fold_done(result.cv_dir / f"fold-{k}", True) for k in (1, 2))
    assert len(read_probabilities(result.cv_dir / "oof_predictions.npz").ids) == 48
    assert (result.cv_dir / "metrics.json").exists()


@pytest.mark.slow
def test_a_cluster_that_loses_every_worker_waits_then_fails_and_a_rerun_continues(tiny, home, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 1.0)
    monkeypatch.setattr(cluster, "POLL_SECONDS", 0.2)
    gate = tmp_path / "gate"
    gate.mkdir()
    loop = LoopbackCluster(tmp_path / "dask", workers=1, gate=gate, gate_from=2)  # the 2nd fold waits at the gate
    config, lines = TrainConfig(competition=tiny, **QUICK), []

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


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "WORKERS=0: give 1 (train in this process) or more (a local Dask cluster"),
    (["--scheduler", "tcp://127.0.0.1:1", "--workers", "2"], "SCHEDULER=tcp://127.0.0.1:1 and WORKERS=2: a "
                                                             "scheduler's workers are the `dask worker` processes"),
    (["--scheduler", "unreachable"], "SCHEDULER=tcp://127.0.0.1:{port}: no Dask scheduler answers there ("),
    (["--env", "unreachable"], "SCHEDULER=tcp://127.0.0.1:{port}: no Dask scheduler answers there ("),
])
def test_bad_cluster_settings_are_one_line_before_any_work(tiny, home, capsys, monkeypatch, args, message):
    from kip import main

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 0.5)
    port = free_port()  # nothing listens there
    if args[0] == "--env":
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", f"tcp://127.0.0.1:{port}")
        args = []
    args = [f"tcp://127.0.0.1:{port}" if a == "unreachable" else a for a in args]
    assert main(["cv", "--competition", tiny, "--folds", "2", "--set", "epochs=1", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: " + message.format(port=port)) and "\n" not in err
    assert not (home / "runs").exists()


def test_settings_that_name_a_local_file_are_refused_for_a_cluster(tiny, home):
    (home / "runs" / "x").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"^pseudo_labels=runs/x: a file on this machine, which the cluster's "
                                            r"workers cannot read; run this CV in this process"):
        run_cv(TrainConfig(competition=tiny, pseudo_labels="runs/x", **QUICK), folds=2, client=object())


def test_make_passes_the_scheduler_and_workers_to_cv_and_compete():
    cv = make_dry_run("cv", "COMPETITION=no-such-competition-xyz", "SCHEDULER=tcp://h:8786")
    compete = make_dry_run("compete", "COMPETITION=no-such-competition-xyz", "MINUTES=30", "WORKERS=3")
    assert "--scheduler 'tcp://h:8786' --workers 1" in cv and "--workers 3" in compete
