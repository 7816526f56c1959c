import pandas as pd
import pytest

from competition.config import load_competition
from competition.errors import PipelineError
from submissions import upload
from submissions.writer import newest_submission, submission_path, write_submission


@pytest.fixture
def no_kaggle_credentials(home, monkeypatch):
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / "no-kaggle"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "no-xdg"))


def test_writer_follows_sample_order_and_keeps_labels(tiny, home):
    comp = load_competition(tiny)
    test_ids = pd.read_csv(home / "data/raw/tiny/test.csv").Image.tolist()
    labels = [i % 3 for i in range(len(test_ids))]
    path = write_submission(comp, test_ids, labels, submission_path("run-a"), details={"val_accuracy": 0.5})
    written = pd.read_csv(path)
    assert written.Image.tolist() == pd.read_csv(home / "data/raw/tiny/sample_submission.csv").Image.tolist()
    assert dict(zip(written.Image, written.Class)) == dict(zip(test_ids, labels))
    assert path.with_suffix(".json").exists() and newest_submission(tiny) == path


def test_writer_refuses_missing_predictions_and_writes_nothing(tiny, home):
    comp = load_competition(tiny)
    with pytest.raises(PipelineError, match="no prediction for image"):
        write_submission(comp, ["test_0_0.png"], [0], submission_path("run-b"))
    assert not list((home / "submissions").glob("run-b*")) if (home / "submissions").exists() else True


def test_submit_without_credentials_is_one_clear_line_and_leaves_the_file(tiny, home, no_kaggle_credentials):
    path = home / "sub.csv"
    path.write_text("Image,Class\na.png,1\n")
    with pytest.raises(PipelineError, match="no Kaggle credentials"):
        upload.submit(path, "msg", "tiny")
    assert path.read_text() == "Image,Class\na.png,1\n"


def test_refused_upload_is_an_error_although_the_client_does_not_raise(home, monkeypatch):
    class Refusing:
        def competition_submit(self, file_name, message, competition):
            return type("R", (), {"message": "Could not submit to competition"})()

    monkeypatch.setattr(upload, "kaggle_api", lambda: Refusing())
    path = home / "sub.csv"
    path.write_text("Image,Class\na.png,1\n")
    with pytest.raises(PipelineError, match="refused"):
        upload.submit(path, "msg", "tiny")
