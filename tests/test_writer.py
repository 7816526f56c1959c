import json

import pandas as pd
import pytest

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines.data import list_split
from submissions.format import parse_header
from submissions.sidecar import record_upload
from submissions.upload import Submitted
from submissions.writer import newest_submission, prediction_name, submission_name, submission_path, write_submission
from tests.conftest import write_class_folders, write_competition


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


# --- class-folder layouts, sample submissions of detected competitions, headers -----------------------------------

def folder_competition(home, **options):
    """A detected class-folder competition (train/<class>/, val/<class>/, test/), no sample submission."""
    write_class_folders(home, **options)
    return load_competition("folders")


def test_class_folders_without_a_sample_get_file_names_under_id_label(home):
    comp = folder_competition(home)
    ids = list_split(comp, "test", labelled=False).ids
    assert ids[:2] == ["cat_0.png", "cat_1.png"]
    path = write_submission(comp, ids, ["dog"] * len(ids), submission_path("folders-run"))
    lines = path.read_text().splitlines()
    assert lines[0] == "id,label" and [line.split(",")[0] for line in lines[1:]] == ids
    assert {line.split(",")[1] for line in lines[1:]} == {"dog"}
    assert json.loads(path.with_suffix(".json").read_text())["submission_header"] == ["id", "label"]
    with pytest.raises(PipelineError, match=r"label 'fox' is not one of the competition's 3 labels"):
        write_submission(comp, ids, ["fox"] * len(ids), submission_path("fox"))  # labels: the class folder names
    assert not (home / "submissions/fox.csv").exists()


def test_a_test_split_in_class_folders_is_listed_as_class_and_file(home):
    comp = folder_competition(home, test_flat=False)
    ids = list_split(comp, "test", labelled=False).ids
    path = write_submission(comp, ids, ["emu"] * len(ids), submission_path("nested"))
    assert pd.read_csv(path).id.tolist() == ids and ids[0] == "cat/cat_0.png"


def test_submission_header_from_the_config_key_or_the_command_line(home):
    raw = write_class_folders(home)
    (raw / "competition.toml").write_text('slug = "folders"\nlayout = "folders"\n'
                                          'submission_header = ["file", "breed"]\n')
    comp = load_competition("folders")
    ids = list_split(comp, "test", labelled=False).ids
    path = write_submission(comp, ids, ["cat"] * len(ids), submission_path("keyed"))
    assert path.read_text().splitlines()[0] == "file,breed"
    path = write_submission(comp.replace(submission_header=parse_header("ImageId, Label", "--submission-header")),
                            ids, ["cat"] * len(ids), submission_path("option"))
    assert path.read_text().splitlines()[0] == "ImageId,Label"


@pytest.mark.parametrize("text", ["id", "id,id", "id,", "a,b,c", ["x"], ["id", 1], 5])
def test_a_bad_submission_header_is_refused(text):
    with pytest.raises(PipelineError, match=r"^--submission-header: submission header .* is not two distinct column "
                                            r"names, the id column then the label column; use for example id,label$"):
        parse_header(text, "--submission-header")


def sample(raw, header, ids, label):
    pd.DataFrame({header[0]: ids, header[1]: label}).to_csv(raw / "sample_submission.csv", index=False)


@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_a_detected_competitions_sample_is_the_format_for_every_layout(home, layout):
    if layout == "folders":
        raw = write_class_folders(home)
        ids, label = list_split(load_competition("folders"), "test", labelled=False).ids, "cat"
    else:
        raw = write_competition(home)
        (raw / "competition.toml").unlink()
        ids, label = pd.read_csv(raw / "test.csv").Image.tolist(), 1
    sample(raw, ["ID", "Prediction"], ids[::-1], label)
    comp = load_competition(raw.name)  # detection finds the sample submission
    assert comp.sample_submission == "sample_submission.csv"
    path = write_submission(comp, ids, [label] * len(ids), submission_path(f"sampled-{layout}"))
    written = pd.read_csv(path, dtype=str)
    assert list(written.columns) == ["ID", "Prediction"] and written.ID.tolist() == ids[::-1]
    assert "submission_header" not in json.loads(path.with_suffix(".json").read_text())


def test_a_sample_disagreeing_with_the_submission_header_is_an_error_and_nothing_is_written(home):
    raw = write_class_folders(home)
    comp = load_competition("folders")
    ids = list_split(comp, "test", labelled=False).ids
    sample(raw, ["ID", "Prediction"], ids, "cat")
    comp = comp.replace(sample_submission="sample_submission.csv", submission_header=["id", "label"])
    with pytest.raises(PipelineError, match=r"sample_submission.csv: header 'ID,Prediction' differs from the "
                                            r"submission header 'id,label' asked for; the sample submission is the "
                                            r"format: drop SUBMISSION_HEADER / submission_header$"):
        write_submission(comp, ids, ["cat"] * len(ids), submission_path("clash"))
    assert not (home / "submissions").exists()


# --- names: what made a submission, and an uploaded file is never overwritten -------------------------------------

def test_names_carry_tta_and_the_ensembles_member_set():
    assert prediction_name(["runs/cnn-1"]) == "cnn-1"
    assert prediction_name(["runs/cnn-1"], tta="flip") == "cnn-1-tta-flip"
    pair, other = prediction_name(["cnn-1", "cnn-2"]), prediction_name(["cnn-1", "cnn-3"])
    assert pair.startswith("ensemble-2-cnn-1-") and other.startswith("ensemble-2-cnn-1-") and pair != other
    assert prediction_name(["x/cnn-1", "y/cnn-2"]) == pair
    assert prediction_name(["cnn-1", "cnn-2"], tta="flip") == f"{pair}-tta-flip"
    assert submission_name(prediction_name(["cnn-1"], tta="flip"), 0.7123) == "cnn-1-tta-flip-val0.712"


def test_an_uploaded_submission_is_never_overwritten(tiny, home):
    comp = load_competition(tiny)
    test_ids = pd.read_csv(home / "data/raw/tiny/test.csv").Image.tolist()
    target = submission_path("cnn-1", 0.7)
    first = write_submission(comp, test_ids, [0] * len(test_ids), target, details={"val_accuracy": 0.7})
    assert first == target
    write_submission(comp, test_ids, [1] * len(test_ids), target)  # not uploaded yet: replaced in place
    record_upload(first, tiny, "try", Submitted(message="Successfully submitted", ref=7))
    before = {p.name: p.read_bytes() for p in (first, first.with_suffix(".json"))}

    second = write_submission(comp, test_ids, [2] * len(test_ids), target)
    assert second.name == "cnn-1-val0.700-2.csv" and pd.read_csv(second).Class.tolist() == [2] * 12
    assert {p.name: p.read_bytes() for p in (first, first.with_suffix(".json"))} == before
    assert newest_submission(tiny) == second
    record_upload(second, tiny, "again", Submitted(message="Successfully submitted", ref=8))
    assert write_submission(comp, test_ids, [0] * len(test_ids), target).name == "cnn-1-val0.700-3.csv"
