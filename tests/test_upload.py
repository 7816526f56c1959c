"""The real kaggle client against the local fake Kaggle server (tests/kaggle_server.py): loopback only."""
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import zipfile

import pandas as pd
import pytest

from competition.errors import PipelineError
from competition.registry import load_competition
from submissions import upload
from submissions.writer import submission_path, write_submission
from tests.conftest import write_competition
from tests.kaggle_server import FakeKaggle, client_env, make_command, zip_folder


@pytest.fixture
def server(tiny, home):
    """A running fake Kaggle that knows the tiny competition and scores uploads against its test labels."""
    answers = pd.read_csv(home / "data/raw/tiny/test_labels.csv", dtype=str)
    with FakeKaggle(lifetime=900) as fake:
        fake.add_competition("tiny", b"", dict(zip(answers.Image, answers.Class)), title="Tiny Test")
        yield fake


@pytest.fixture
def submission(tiny, home):
    """A correct submission written by the writer: perfect labels, so the server scores it 1.0."""
    truth = pd.read_csv(home / "data/raw/tiny/test_labels.csv")
    return write_submission(load_competition(tiny), truth.Image.tolist(), truth.Class.tolist(),
                            submission_path("cnn-20261122-101500", 0.75), details={"val_accuracy": 0.75})


def run(args, home, env, make=True):
    command = make_command(*args) if make else [sys.executable, "-m", "kip", *args]
    # the timeout is a safety net for a hung process on a loaded machine, not a speed check
    result = subprocess.run(command, capture_output=True, text=True, cwd=home, env=env, timeout=900)
    return result


def one_error_line(result):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_no_secret(result, server):
    assert server.key not in result.stdout + result.stderr
    if server.token:
        assert server.token not in result.stdout + result.stderr


def test_make_submit_uploads_the_bytes_intact_then_lists_the_score(server, submission, home):
    before, mtime = submission.read_bytes(), submission.stat().st_mtime_ns
    result = run(["submit", "COMPETITION=tiny", f"FILE={submission}", "MESSAGE=first try"], home,
                 client_env(home, server))
    assert result.returncode == 0, result.stderr
    assert f"check: {submission}: OK, 12 rows" in result.stdout
    assert "Kaggle says: Successfully submitted to Tiny Test (ref 1)" in result.stdout
    listed = [line for line in result.stdout.splitlines() if line.endswith("  first try")]
    assert len(listed) == 1 and "complete" in listed[0] and "1.00000" in listed[0] and submission.name in listed[0]
    assert "4 more allowed today" in result.stdout
    received = server.submissions["tiny"][0]
    assert received["data"] == before and received["fileName"] == submission.name
    assert submission.read_bytes() == before and submission.stat().st_mtime_ns == mtime
    uploads = json.loads(submission.with_suffix(".json").read_text())["uploads"]
    assert uploads[0]["ref"] == 1 and uploads[0]["message"] == "first try"
    assert_no_secret(result, server)


def test_without_FILE_the_newest_submission_goes_with_a_message_naming_its_score(server, submission, home):
    result = run(["submit", "--competition", "tiny"], home, client_env(home, server), make=False)
    assert result.returncode == 0, result.stderr
    assert server.submissions["tiny"][0]["description"] == f"{submission.stem} val_accuracy=0.7500"


def test_a_token_from_KAGGLE_API_TOKEN_works_too(server, submission, home):
    server.token = "tok-0123456789abcdef"
    result = run(["submit", f"FILE={submission}"], home, client_env(home, server) | server.env(with_token=True))
    assert result.returncode == 0, result.stderr
    assert server.submissions["tiny"][0]["data"] == submission.read_bytes()
    assert_no_secret(result, server)


@pytest.mark.parametrize("mode, message", [
    ("server-error",
     "not submitted: tiny: Kaggle server error (500) on the upload; try again later; the file is unchanged"),
    ("refuse-upload", "Kaggle refused the upload to tiny: Could not submit to competition"),
    ("bad-credentials", "not submitted: tiny: Kaggle refused the credentials (401 Unauthorized)"),
])
def test_failed_upload_is_one_clear_line_and_leaves_the_file(server, submission, home, mode, message):
    server.fail = mode
    before, mtime = submission.read_bytes(), submission.stat().st_mtime_ns
    result = run(["submit", f"FILE={submission}"], home, client_env(home, server))
    line = one_error_line(result)
    assert line.startswith(f"error: {submission}: ") and message in line and line.endswith("the file is unchanged")
    assert submission.read_bytes() == before and submission.stat().st_mtime_ns == mtime
    assert "uploads" not in json.loads(submission.with_suffix(".json").read_text())
    assert server.submissions["tiny"] == []
    assert_no_secret(result, server)


def test_without_network_is_one_clear_line(submission, home):
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = FakeKaggle(lifetime=1)
    env = client_env(home, None, **{k: v.replace(str(fake.port), str(port)) for k, v in fake.env().items()})
    fake.stop()
    line = one_error_line(run(["submit", f"FILE={submission}"], home, env))
    assert "cannot reach Kaggle for the upload" in line and line.endswith("the file is unchanged")


def test_without_credentials_is_one_clear_line(server, submission, home):
    env = {k: v for k, v in client_env(home, server).items() if k not in ("KAGGLE_USERNAME", "KAGGLE_KEY")}
    result = run(["submit", f"FILE={submission}"], home, env)
    assert one_error_line(result).startswith("error: no Kaggle credentials: put kaggle.json in ~/.kaggle/")
    assert "Authentication required" not in result.stdout  # the client's page of help is swallowed
    assert server.calls == []


def test_a_broken_file_is_refused_before_any_upload(server, submission, home):
    bad = submission.with_name("bad.csv")
    bad.write_text(submission.read_text().replace("\n", "\nnope.png,1\n", 1))
    line = one_error_line(run(["submit", f"FILE={bad}", "COMPETITION=tiny"], home, client_env(home, server)))
    assert line == f"error: {bad}: row 2: id 'nope.png' is not in the test set (sample_submission.csv)"
    assert server.calls == []


def test_a_gzipped_submission_is_checked_and_uploaded_as_given(tiny, submission, home):
    packed = submission.with_name(submission.name + ".gz")
    packed.write_bytes(gzip.compress(submission.read_bytes()))
    with FakeKaggle(lifetime=900) as fake:
        fake.add_competition("tiny", b"", title="Tiny Test")  # no answers: the fake does not unpack uploads to score
        result = run(["submit", f"FILE={packed}", "COMPETITION=tiny"], home, client_env(home, fake))
    assert result.returncode == 0, result.stderr
    assert f"check: {packed}: OK, 12 rows" in result.stdout
    received = fake.submissions["tiny"][0]
    assert received["data"] == packed.read_bytes() and received["fileName"] == packed.name
    assert received["description"] == f"{submission.stem} val_accuracy=0.7500"
    uploads = json.loads(submission.with_suffix(".json").read_text())["uploads"]  # the CSV's sidecar: same rows
    assert [u["file"] for u in uploads] == [packed.name] and not packed.with_suffix(".json").exists()


def test_refused_upload_without_the_server_is_an_error_although_the_client_does_not_raise(home, monkeypatch):
    class Refusing:  # the one place a double is used: the real client's return value, without a server
        def competition_submit(self, file_name, message, competition):
            return type("R", (), {"message": upload.UPLOAD_FAILED})()

    monkeypatch.setattr(upload, "kaggle_api", lambda: Refusing())
    path = home / "sub.csv"
    path.write_text("Image,Class\na.png,1\n")
    with pytest.raises(PipelineError, match="refused"):
        upload.submit(path, "msg", "tiny")
    assert path.read_text() == "Image,Class\na.png,1\n"


# --- downloads ------------------------------------------------------------------------------------------------


def fetched_config(home, slug="fetched"):
    """A competition config (outside data/raw, which the download replaces) whose source is Kaggle."""
    config = home / f"{slug}.toml"
    config.write_text((home / "data/raw/tiny/competition.toml").read_text()
                      .replace('slug = "tiny"', f'slug = "{slug}"').replace('test_labels = "test_labels.csv"', ""))
    return config


def test_make_data_downloads_and_unzips_the_archive(tiny, home):
    source = write_competition(home / "elsewhere", slug="packed")
    archive = zip_folder(source)
    with FakeKaggle(lifetime=900) as fake:
        fake.add_competition("fetched", archive)
        result = run(["data", f"COMPETITION={fetched_config(home)}"], home, client_env(home, fake))
    assert result.returncode == 0, result.stderr
    raw = home / "data/raw/fetched"
    assert (raw / "train.csv").read_bytes() == (source / "train.csv").read_bytes()
    assert len(list((raw / "train_images").glob("*.png"))) == len(list((source / "train_images").glob("*.png")))
    assert (home / "data/raw/fetched.zip").read_bytes() == archive  # the client saved <slug>.zip, intact
    assert (home / "data/raw/fetched.ready").exists()
    assert [c for c in fake.calls if "DownloadDataFiles" in c or c.startswith("GET")] == [
        "POST /api/v1/competitions.CompetitionApiService/DownloadDataFiles", "GET /files/fetched.zip"]


def test_an_archive_with_an_escaping_member_is_refused(tiny, home):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("train.csv", "Image,Class\n")
        zf.writestr("../escaped.txt", "outside")
    with FakeKaggle(lifetime=900) as fake:
        fake.add_competition("fetched", buffer.getvalue())
        result = run(["data", "--competition", str(fetched_config(home))], home, client_env(home, fake), make=False)
    line = one_error_line(result)
    assert "member '../escaped.txt' would be written outside" in line
    assert not (home / "data/escaped.txt").exists() and not (home / "data/raw/fetched").exists()


def test_download_before_the_rules_are_accepted_says_so(tiny, home):
    with FakeKaggle(lifetime=900) as fake:
        fake.add_competition("fetched", b"")
        fake.fail = "rules"
        result = run(["data", "--competition", str(fetched_config(home))], home, client_env(home, fake), make=False)
    line = one_error_line(result)
    assert "403 Forbidden" in line
    assert "accept the competition's rules on https://www.kaggle.com/competitions/fetched/rules" in line
    assert "You must accept this competition's rules" in line  # Kaggle's own words, as the client raises them


@pytest.mark.slow
def test_make_submit_RUNS_predicts_with_those_runs_then_uploads(server, home):
    from pipelines.config import TrainConfig
    from pipelines.train import train

    runs = [train(TrainConfig(competition="tiny", epochs=1, batch_size=8, seed=s, verbose=0)).run_dir for s in (1, 2)]
    result = run(["submit", f"RUNS={runs[0].name} {runs[1].name}", "COMPETITION=tiny"], home,
                 client_env(home, server))
    assert result.returncode == 0, result.stderr[-3000:]
    written = sorted((home / "submissions").glob("ensemble-2-*.csv"))
    assert len(written) == 1 and "-val" in written[0].name
    assert server.submissions["tiny"][0]["data"] == written[0].read_bytes()
    assert os.path.basename(written[0]) in result.stdout


def test_redact_hides_credential_values_in_messages(monkeypatch):
    from competition.kaggle_client import redact

    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-key-value")
    text = redact("HTTPError: bad key s3cr3t-key-value via http://user:pass@proxy:3128/")
    assert "s3cr3t" not in text and "user:pass" not in text and "***" in text
