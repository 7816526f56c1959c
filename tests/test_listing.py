import os
import subprocess

import pandas as pd

from competition.registry import load_competition
from submissions.listing import format_listing, list_submissions
from submissions.writer import submission_path, write_submission
from tests.kaggle_server import client_env, make_command


def write(tiny, home, name, val, when):
    truth = pd.read_csv(home / "data/raw/tiny/test_labels.csv")
    path = write_submission(load_competition(tiny), truth.Image.tolist(), truth.Class.tolist(),
                            submission_path(name, val), details={"val_accuracy": val})
    os.utime(path, (when, when))
    return path


def test_lists_newest_first_with_validation_scores(tiny, home):
    old = write(tiny, home, "cnn-20261101-000000", 0.61, 1_700_000_000)
    new = write(tiny, home, "resnet10-20261102-000000", 0.72, 1_700_100_000)
    rows = list_submissions()
    assert [r["path"] for r in rows] == [new, old]
    assert [r["val_accuracy"] for r in rows] == [0.72, 0.61]
    assert list_submissions("other") == [] and len(list_submissions("tiny")) == 2
    text = format_listing(rows)
    assert "0.7200" in text[1] and "submissions/resnet10-20261102-000000-val0.720.csv" in text[1]


def test_make_submissions_prints_the_list(tiny, home):
    write(tiny, home, "cnn-20261101-000000", 0.61, 1_700_000_000)
    result = subprocess.run(make_command("submissions"), capture_output=True, text=True, cwd=home,
                            env=client_env(home))
    assert result.returncode == 0, result.stderr
    assert "0.6100" in result.stdout and "cnn-20261101-000000-val0.610.csv" in result.stdout


def test_no_submissions_says_what_to_do(home):
    assert "run `make predict` first" in format_listing(list_submissions())[0]


def test_an_uploaded_file_and_the_one_written_after_it_are_both_listed(tiny, home):
    from submissions.sidecar import record_upload
    from submissions.upload import Submitted

    first = write(tiny, home, "cnn-20261101-000000", 0.61, 1_700_000_000)
    record_upload(first, tiny, "try", Submitted(message="Successfully submitted", ref=1))
    again = write(tiny, home, "cnn-20261101-000000", 0.61, 1_700_100_000)
    assert again.name == "cnn-20261101-000000-val0.610-2.csv"
    rows = list_submissions("tiny")
    assert [(r["path"], r["uploads"]) for r in rows] == [(again, 0), (first, 1)]
