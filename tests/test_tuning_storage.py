"""Study storage shared by several processes: SQLite (WAL) on one host, PostgreSQL across hosts, journal files."""
import io
import json
import multiprocessing
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from competition.errors import PipelineError
from tuning.storage import open_storage


def _quick_worker(url: str, name: str, n_trials: int) -> None:
    """A worker with a trivial objective: many fast writes, the worst case for locking."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=1),
                              sampler=optuna.samplers.RandomSampler(seed=os.getpid()))
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0) + t.suggest_int("y", 0, 9), n_trials=n_trials)


def run_workers(url: str, workers: int, n_trials: int) -> optuna.Study:
    name = "shared"
    optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=1), direction="maximize",
                        load_if_exists=True)
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_quick_worker, args=(url, name, n_trials)) for _ in range(workers)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=900)  # a safety net, not a speed check
    assert [p.exitcode for p in processes] == [0] * workers  # no "database is locked" or any other crash
    return optuna.load_study(study_name=name, storage=open_storage(url))


def assert_no_lost_or_duplicated(study: optuna.Study, expected: int) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == expected
    assert sorted(t.number for t in trials) == list(range(expected))
    assert len({t._trial_id for t in trials}) == expected
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_sqlite_holds_under_four_local_workers(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    study = run_workers(url, workers=4, n_trials=15)
    assert_no_lost_or_duplicated(study, 60)


def test_journal_file_storage_shared_by_two_workers(tmp_path):
    study = run_workers(str(tmp_path / "study.journal"), workers=2, n_trials=15)
    assert_no_lost_or_duplicated(study, 30)


def test_bad_storage_is_one_line_error(tmp_path):
    with pytest.raises(PipelineError, match="storage 'nosuchdb://x'"):
        open_storage("nosuchdb://x")
    with pytest.raises(PipelineError, match="SQLAlchemy URL"):
        open_storage(str(tmp_path / "studies.db"))


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_opens_in_optuna_dashboard(tmp_path, kind):
    dashboard = pytest.importorskip("optuna_dashboard")
    from wsgiref.util import setup_testing_defaults

    url = f"sqlite:///{tmp_path / 'studies.db'}" if kind == "sqlite" else str(tmp_path / "tiny-cnn.journal")
    study = optuna.create_study(study_name="tiny-cnn", storage=open_storage(url), direction="maximize")
    study.optimize(lambda t: t.suggest_float("learning_rate", 1e-4, 1e-2, log=True), n_trials=3)
    app = dashboard.wsgi(url)  # what `optuna-dashboard sqlite:///tuning/studies.db` (or the .journal) serves

    def get(path):
        environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "wsgi.input": io.BytesIO()}
        setup_testing_defaults(environ)
        status = []
        body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status)
        return json.loads(body)

    summaries = get("/api/studies")["study_summaries"]
    assert [s["study_name"] for s in summaries] == ["tiny-cnn"]
    detail = get(f"/api/studies/{summaries[0]['study_id']}")
    assert [t["state"] for t in detail["trials"]] == ["Complete"] * 3


# ---- PostgreSQL: a real server on a loopback port ----

def _postgres_bin() -> Path | None:
    candidates = [Path(p).parent for p in [shutil.which("pg_ctl")] if p]
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    return next((d for d in candidates if (d / "pg_ctl").exists() and (d / "initdb").exists()), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """Start a throwaway PostgreSQL server (initdb + pg_ctl) for the module; skip only if none is installed."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server not installed (Debian: apt-get install postgresql; .ci/run installs it)")
    pytest.importorskip("psycopg2", reason="psycopg2-binary not installed")
    root = Path(tempfile.mkdtemp(prefix="kip-pg-"))
    os.chmod(root, 0o755)
    prefix = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(prefix + [str(bindir / "initdb"), "-D", str(data), "-U", "kip", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://kip@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_postgresql_several_workers_share_one_study(postgres_url):
    study = run_workers(postgres_url, workers=3, n_trials=10)
    assert_no_lost_or_duplicated(study, 30)


def test_tune_runs_on_postgresql(postgres_url, tiny, home):
    from pipelines.config import TrainConfig
    from tuning.fidelity import CheckOptions
    from tuning.search import TuneOptions, best_params_path, tune
    from tuning.space import build_space

    study = tune(TrainConfig(competition=tiny, verbose=0, epochs=1), build_space("cnn", ["epochs=1", "batch_size=8"]),
                 TuneOptions(trials=2, storage=postgres_url, check=CheckOptions(top=0)))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert study.user_attrs["fidelity"]["minutes"] == 3 and "why" in study.user_attrs["check"]  # attrs in PostgreSQL
    assert json.loads(best_params_path(tiny, "cnn").read_text())["study"] == "tiny-cnn"


def test_successive_halving_decides_at_12_and_36_percent_and_the_sampler_start_up_fits_the_budget(tmp_path):
    from tuning.storage import open_study, startup_trials

    assert [startup_trials(n) for n in (None, 8, 22, 100)] == [10, 4, 6, 10]  # a quarter of the trials, 4 to 10
    study = open_study("s", f"sqlite:///{tmp_path / 's.db'}", startup=6)
    assert isinstance(study.pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert study.sampler._n_startup_trials == 6 and study.sampler._multivariate  # multivariate TPE
    study = optuna.create_study(direction="maximize", pruner=study.pruner)  # in memory: no heartbeat to keep

    def reach(values: dict[int, float]) -> bool:
        """A trial reporting ``values`` (percent of its run -> accuracy): whether the pruner stopped it."""
        trial = study.ask()
        for step, value in values.items():
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return True
        study.tell(trial, value)
        return False

    assert not reach({5: 0.1, 12: 0.5, 36: 0.6, 100: 0.7})  # the first trial at each rung goes on
    assert reach({5: 0.0, 12: 0.3})  # below the best at 12% (fewer than 3 there: only the best goes on)
    assert not reach({12: 0.55, 36: 0.65})  # better at 12%, and at 36%
    assert not reach({5: 0.0, 10: 0.0})  # before the first rung nothing is decided
