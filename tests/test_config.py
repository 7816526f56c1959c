from pathlib import Path

import pytest

from competition.errors import PipelineError
from competition.layout import describe
from competition.registry import list_competitions, load_competition


def test_shipped_configs_load():
    assert {"digits-demo", "gic-unibuc-dl-2023"} <= set(list_competitions())
    gic = load_competition("gic-unibuc-dl-2023")
    assert gic.num_classes == 100 and gic.image_size == (64, 64) and gic.channels == 3
    assert gic.splits["train"].csv == "train.csv" and gic.splits["val"].images == "val_images"
    assert gic.image_column == "Image" and gic.label_column == "Class"


def test_competition_config_in_raw_folder_wins(tiny, home):
    comp = load_competition("tiny")
    assert comp.image_size == (16, 16)
    assert comp.raw_dir == home / "data" / "raw" / "tiny"


def test_unknown_competition_is_one_to_download_and_loading_it_is_one_clear_line(home):
    from pipelines.data import load_dataset

    comp = load_competition("nope")  # `make data` downloads it with the kaggle client, then detects its layout
    assert (comp.source, comp.splits, comp.raw_dir) == ("kaggle", {}, home / "data" / "raw" / "nope")
    with pytest.raises(PipelineError, match="no config for competition 'nope' .* run `make data COMPETITION=nope`"):
        load_dataset(comp, seed=0, progress=False)
    assert not (home / "data").exists()


@pytest.mark.parametrize("name", ["missing/folder", "./missing", "/no/such/place"])
def test_a_folder_that_is_not_there_is_one_clear_line(home, name):
    with pytest.raises(PipelineError, match=f"^no folder {name}: give COMPETITION= the folder that holds"):
        load_competition(name)


def test_bad_config_names_the_file(home):
    path = home / "bad.toml"
    path.write_text('slug = "x"\n[splits.train]\ncsv = "train.csv"\n')
    with pytest.raises(PipelineError, match="bad.toml.*images"):
        load_competition(str(path))
    path.write_text('slug = "x"\ncolour = 1\n[splits.train]\ncsv="a"\nimages="b"\n[splits.test]\ncsv="c"\nimages="d"\n')
    with pytest.raises(PipelineError, match="unknown setting.*colour"):
        load_competition(str(path))


@pytest.mark.parametrize("name, inside, where", [
    ("sample_submission.csv", "", ""), ("sampleSubmission.csv", "", ""), ("Sample_Submission_v2.CSV", "", ""),
    ("sample_submission.csv", "bundle", "bundle"), ("sample_submission.csv", "bundle", "")])
def test_detection_finds_the_sample_submission(home, name, inside, where):
    from tests.conftest import write_class_folders

    raw = write_class_folders(home, slug="found", per_class=(2, 1, 1))
    if inside:  # an archive that unpacked into a folder of its own
        (raw / inside).mkdir()
        for folder in ("train", "val", "test"):
            (raw / folder).rename(raw / inside / folder)
    (raw / where / name).write_text("ID,Prediction\ncat_0.png,cat\n")
    (raw / inside / "notes.csv").write_text("x\n")
    assert load_competition("found").sample_submission == str(Path(where) / name)
    comp = load_competition("found")
    assert comp.raw_dir / comp.sample_submission == raw / where / name
    assert f'sample_submission = "{comp.sample_submission}"' in describe(comp)  # what `kip data` prints to pin


def test_detection_without_a_sample_submission_leaves_it_unset(home):
    from tests.conftest import write_class_folders

    write_class_folders(home, slug="nosample", per_class=(2, 1, 1))
    assert load_competition("nosample").sample_submission is None
