import gzip
import subprocess
import zipfile

import pandas as pd
import pytest

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines.data import list_split
from submissions.checker import check_submission
from submissions.writer import submission_path, write_submission
from tests.conftest import write_class_folders
from tests.kaggle_server import client_env, make_command


@pytest.fixture
def good(tiny, home):
    """A correct submission for the tiny competition: the sample's ids and order, labels 0..2."""
    sample = pd.read_csv(home / "data/raw/tiny/sample_submission.csv")
    sample["Class"] = [i % 3 for i in range(len(sample))]
    path = home / "good.csv"
    sample.to_csv(path, index=False)
    return path


def lines(path):
    return path.read_text().splitlines()


def broken(path, name, text):
    out = path.with_name(name)
    out.write_text(text)
    return out


def test_a_correct_file_passes(tiny, good):
    report = check_submission(load_competition(tiny), good)
    assert report.rows == 12 and report.labels_checked and report.distinct_labels == 3
    assert "OK, 12 rows" in report.summary()


CASES = {
    "empty": (lambda ls: "", r"empty file \(0 bytes\)"),
    "header-only": (lambda ls: ls[0] + "\n", r"no rows after the header; sample_submission.csv lists 12 ids"),
    "wrong-header": (lambda ls: "\n".join(["Image,Label"] + ls[1:]) + "\n",
                     r"row 1: header is 'Image,Label', expected 'Image,Class' \(as in sample_submission.csv\)"),
    "duplicate": (lambda ls: "\n".join(ls[:3] + [ls[1]] + ls[3:]) + "\n",
                  r"row 4: id '.*' appears twice \(first on row 2\)"),
    "extra": (lambda ls: "\n".join(ls + ["nope.png,1"]) + "\n", r"row 14: id 'nope.png' is not in the test set"),
    "missing": (lambda ls: "\n".join(ls[:-1]) + "\n",
                r"id '.*' \(and 0 more\) from sample_submission.csv is missing: 11 rows, 12 expected"),
    "unknown-label": (lambda ls: "\n".join(ls[:2] + [ls[2].split(",")[0] + ",9"] + ls[3:]) + "\n",
                      r"row 3: label '9' is not one of the competition's 3 labels \(e.g. '0', '1', '2'\)"),
    "empty-label": (lambda ls: "\n".join(ls[:2] + [ls[2].split(",")[0] + ","] + ls[3:]) + "\n", r"row 3: empty label"),
    "extra-field": (lambda ls: "\n".join(ls[:2] + [ls[2] + ",x"] + ls[3:]) + "\n", r"row 3: 3 fields, expected 2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_files_are_refused_naming_the_row_and_why(tiny, good, case):
    make, pattern = CASES[case]
    path = broken(good, f"{case}.csv", make(lines(good)))
    with pytest.raises(PipelineError, match=pattern) as err:
        check_submission(load_competition(tiny), path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_make_check_submission_prints_one_line_and_exits_nonzero(tiny, good, home):
    bad = broken(good, "dup.csv", "\n".join(lines(good) + [lines(good)[1]]) + "\n")
    before = bad.read_bytes()
    result = subprocess.run(make_command("check-submission", "COMPETITION=tiny", f"FILE={bad}"),
                            capture_output=True, text=True, cwd=home, env=client_env(home))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: row 14: id '{lines(good)[1].split(',')[0]}' appears twice (first on row 2)"]
    assert bad.read_bytes() == before

    ok = subprocess.run(make_command("check-submission", "COMPETITION=tiny", f"FILE={good}"),
                        capture_output=True, text=True, cwd=home, env=client_env(home))
    assert ok.returncode == 0 and f"check: {good}: OK, 12 rows" in ok.stdout


# --- compressed submissions (Kaggle takes .csv.gz and a .zip of one CSV) -------------------------------------------

def gzipped(path):
    out = path.with_name(path.name + ".gz")
    out.write_bytes(gzip.compress(path.read_bytes()))
    return out


def zipped(path, *extra):
    out = path.with_name(path.stem + ".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in (path.name, *extra):
            archive.writestr(name, path.read_bytes())
    return out


@pytest.mark.parametrize("pack", [gzipped, zipped])
def test_a_compressed_submission_is_checked_like_its_csv(tiny, good, pack):
    report = check_submission(load_competition(tiny), pack(good))
    assert report.rows == 12 and report.labels_checked
    duplicated = broken(good, "dup.csv", "\n".join(lines(good) + [lines(good)[1]]) + "\n")
    with pytest.raises(PipelineError, match=r"row 14: id '.*' appears twice"):
        check_submission(load_competition(tiny), pack(duplicated))


@pytest.mark.parametrize("name, make, pattern", [
    ("two.zip", lambda good: zipped(good, "other.csv"), r"holds 2 files; a zipped submission holds exactly one CSV"),
    ("bad.csv.gz", lambda good: broken(good, "bad.csv.gz", "Image,Class\n"),
     r"cannot be read as gzip-compressed UTF-8 CSV \(BadGzipFile: "),
    ("bad.zip", lambda good: broken(good, "bad.zip", "Image,Class\n"),
     r"cannot be read as zip of one UTF-8 CSV \(BadZipFile: "),
])
def test_a_broken_archive_is_one_line(tiny, good, name, make, pattern):
    path = make(good)
    with pytest.raises(PipelineError, match=pattern) as err:
        check_submission(load_competition(tiny), path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


# --- class folders and sample submissions of detected competitions -------------------------------------------------

def test_a_header_other_than_the_detected_competitions_sample_is_refused(home):
    raw = write_class_folders(home)
    comp = load_competition("folders")
    ids = list_split(comp, "test", labelled=False).ids
    pd.DataFrame({"ID": ids, "Prediction": "cat"}).to_csv(raw / "sample_submission.csv", index=False)
    comp = comp.replace(sample_submission="sample_submission.csv")
    ours = home / "ours.csv"
    pd.DataFrame({"id": ids, "label": "cat"}).to_csv(ours, index=False)
    with pytest.raises(PipelineError, match=r"row 1: header is 'id,label', expected 'ID,Prediction' "
                                            r"\(as in sample_submission.csv\)$"):
        check_submission(comp, ours)
    pd.DataFrame({"ID": ids, "Prediction": "cat"}).to_csv(ours, index=False)
    assert check_submission(comp, ours).labels_checked  # labels: the train class folders
    pd.DataFrame({"ID": ids, "Prediction": "owl"}).to_csv(ours, index=False)
    with pytest.raises(PipelineError, match=r"row 2: label 'owl' is not one of the competition's 3 labels "
                                            r"\(e.g. 'cat', 'dog', 'emu'\)$"):
        check_submission(comp, ours)


def test_check_submission_reads_the_header_a_file_was_written_with(home, capsys):
    from kip import main

    write_class_folders(home)
    comp = load_competition("folders")
    ids = list_split(comp, "test", labelled=False).ids
    path = write_submission(comp.replace(submission_header=["file", "breed"]), ids, ["dog"] * len(ids),
                            submission_path("breeds"))
    assert main(["check-submission", "--competition", "folders", "--file", str(path)]) == 0
    assert f"check: {path}: OK, 6 rows" in capsys.readouterr().out
    plain = home / "plain.csv"
    plain.write_text(path.read_text())  # the same rows without the sidecar: the default header is expected
    assert main(["check-submission", "--competition", "folders", "--file", str(plain)]) == 2
    assert "header is 'file,breed', expected 'id,label' (no sample submission" in capsys.readouterr().err
