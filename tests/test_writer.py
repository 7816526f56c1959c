import json

import pandas as pd
import pytest

from competition.config import load_competition
from competition.errors import PipelineError
from submissions.writer import newest_submission, submission_name, submission_path, write_submission


def fake_run(home, name="cnn-20261122-101500", classes=(0, 1, 2), val=0.71234):
    """A finished run's folder as train() leaves it, minus the model: config.json and metrics.json."""
    run = home / "runs" / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"competition": "tiny", "arch": "cnn", "epochs": 3,
                                                 "learning_rate": 0.001, "classes": list(classes)}))
    (run / "metrics.json").write_text(json.dumps({"val_accuracy": val, "val_macro_f1": 0.5, "epochs_run": 3}))
    return run


def test_file_name_carries_the_run_and_its_validation_score(home):
    assert submission_name("cnn-20261122-101500", 0.71234) == "cnn-20261122-101500-val0.712"
    assert submission_path("cnn-20261122-101500", 0.7).name == "cnn-20261122-101500-val0.700.csv"
    assert submission_path("resnet10-x").name == "resnet10-x.csv"
    assert submission_path("a", 0.5).parent == home / "submissions"


def test_writer_follows_sample_header_ids_and_order_with_a_sidecar(tiny, home):
    comp = load_competition(tiny)
    run = fake_run(home)
    test_ids = pd.read_csv(home / "data/raw/tiny/test.csv").Image.tolist()
    labels = [i % 3 for i in range(len(test_ids))]
    path = write_submission(comp, test_ids, labels, submission_path(run.name, 0.71234),
                            details={"runs": [str(run)], "val_accuracy": 0.71234})
    assert path.name == "cnn-20261122-101500-val0.712.csv"
    written = pd.read_csv(path)
    assert written.Image.tolist() == pd.read_csv(home / "data/raw/tiny/sample_submission.csv").Image.tolist()
    assert dict(zip(written.Image, written.Class)) == dict(zip(test_ids, labels))
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["competition"] == "tiny" and side["run"] == run.name and side["model"] == "cnn"
    assert side["scores"]["val_accuracy"] == pytest.approx(0.71234) and side["rows"] == len(test_ids)
    assert side["run_details"][0]["settings"]["epochs"] == 3 and "classes" not in side["run_details"][0]["settings"]
    assert newest_submission(tiny) == path
    assert not [p for p in (home / "submissions").iterdir() if p.name.startswith(".")]  # no temporary left


def test_writer_uses_the_samples_own_columns_and_ids_without_extension(tiny, home):
    raw = home / "data/raw/tiny"
    sample = pd.read_csv(raw / "sample_submission.csv")
    ids = [name.removesuffix(".png") for name in sample.Image]
    pd.DataFrame({"label": 0, "id": ids}).to_csv(raw / "sample_submission.csv", index=False)  # label column first
    test_ids = pd.read_csv(raw / "test.csv").Image.tolist()
    path = write_submission(load_competition(tiny), test_ids, [1] * len(test_ids), submission_path("stems"))
    lines = path.read_text().splitlines()
    assert lines[0] == "label,id" and [line.split(",")[1] for line in lines[1:]] == ids


def test_writer_maps_labels_to_class_names_of_a_folder_layout(tiny, home):
    raw = home / "data/raw/tiny"
    for name in ("train.csv", "val.csv"):  # no label CSV: the labels are the run's class (folder) names
        (raw / name).unlink()
    run = fake_run(home, classes=("cat", "dog", "owl"))
    test_ids = pd.read_csv(raw / "test.csv").Image.tolist()
    names = ["cat", "dog", "owl"] * (len(test_ids) // 3)
    path = write_submission(load_competition(tiny), test_ids, names, submission_path("folders"),
                            details={"runs": [str(run)]})
    assert set(pd.read_csv(path).Class) == {"cat", "dog", "owl"}
    with pytest.raises(PipelineError, match=r"label 'fox' is not one of the competition's 3 labels"):
        write_submission(load_competition(tiny), test_ids, ["fox"] * len(test_ids), submission_path("fox"),
                         details={"runs": [str(run)]})
    assert not (home / "submissions/fox.csv").exists()


def test_writer_refuses_labels_outside_the_competitions_set_and_writes_nothing(tiny, home):
    test_ids = pd.read_csv(home / "data/raw/tiny/test.csv").Image.tolist()
    with pytest.raises(PipelineError, match=r"row \d+: label '7' is not one of the competition's 3 labels"):
        write_submission(load_competition(tiny), test_ids, [7] * len(test_ids), submission_path("bad"))
    assert sorted(p.name for p in (home / "submissions").iterdir()) == []


def test_writer_refuses_missing_predictions_and_writes_nothing(tiny, home):
    with pytest.raises(PipelineError, match=r"no prediction for id '.*' \(and 10 more\)"):
        write_submission(load_competition(tiny), ["test_0_0.png"], [0], submission_path("run-b"))
    assert not (home / "submissions").exists() or not list((home / "submissions").glob("run-b*"))
