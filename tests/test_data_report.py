import json
import shutil

import numpy as np
import pandas as pd
import pytest
from skimage import io

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines.data_report import data_report


def test_report_finds_blank_images_duplicates_and_unseen_val_labels(tiny, home):
    raw = home / "data/raw/tiny"
    train, val, test = (pd.read_csv(raw / f"{s}.csv") for s in ("train", "val", "test"))
    black = np.zeros((16, 16, 3), np.uint8)
    io.imsave(raw / "train_images" / train.Image[0], black, check_contrast=False)  # label 0
    io.imsave(raw / "val_images" / val.Image[5], black, check_contrast=False)  # label 1
    io.imsave(raw / "train_images" / train.Image[1], np.full((16, 16, 3), 200, np.uint8), check_contrast=False)
    shutil.copy(raw / "train_images" / train.Image[20], raw / "test_images" / test.Image[0])
    shutil.copy(raw / "train_images" / train.Image[21], raw / "train_images" / train.Image[22])
    val.loc[11, "Class"] = 9
    val.to_csv(raw / "val.csv", index=False)

    report = data_report(load_competition(tiny), progress=False, samples_per_class=4)

    out = home / "reports" / "tiny"
    assert json.loads((out / "data.json").read_text())["competition"] == "tiny"
    assert io.imread(out / "samples.png").ndim == 3
    md = (out / "data.md").read_text()
    assert "## Blank (constant) images: 3" in md and "Labels in val not in train: [9]" in md
    assert report["counts_per_class"]["train"] == {"0": 12, "1": 12, "2": 12}
    assert report["counts_per_class"]["val"] == {"0": 4, "1": 4, "2": 3, "9": 1}
    assert report["splits"]["test"]["images"] == 12
    assert report["splits"]["train"]["sizes_and_modes"] == [{"size": "16x16", "mode": "RGB", "count": 36}]
    blank = {(b["split"], b["id"], b["value"]) for b in report["blank_images"]}
    assert blank == {("train", train.Image[0], 0), ("val", val.Image[5], 0), ("train", train.Image[1], 200)}
    groups = {tuple(sorted((m["split"], m["id"]) for m in g["members"])): g for g in report["duplicates"]}
    assert len(groups) == 3
    blank_pair = groups[tuple(sorted([("train", train.Image[0]), ("val", val.Image[5])]))]
    assert blank_pair["blank"] and blank_pair["across_splits"] and blank_pair["conflicting_labels"]
    test_pair = groups[tuple(sorted([("test", test.Image[0]), ("train", train.Image[20])]))]
    assert test_pair["across_splits"] and not test_pair["conflicting_labels"] and not test_pair["blank"]
    within = groups[tuple(sorted([("train", train.Image[21]), ("train", train.Image[22])]))]
    assert not within["across_splits"] and within["splits"] == ["train"]
    assert report["val_labels_not_in_train"] == [9]


def test_report_of_a_train_only_greyscale_competition(home):
    from tests.conftest import write_class_folders

    raw = write_class_folders(home, slug="greys", grey=True, per_class=(3, 0, 0))
    shutil.rmtree(raw / "val")
    shutil.rmtree(raw / "test")
    report = data_report(load_competition("greys"), progress=False)
    assert report["missing_splits"] == ["val", "test"] and report["classes"] == ["cat", "dog", "emu"]
    assert report["splits"]["train"]["sizes_and_modes"][0]["mode"] == "L"
    md = (home / "reports" / "greys" / "data.md").read_text()
    assert "No val split" in md and "No test split" in md


def test_report_paths_are_relative_to_the_project_home(tiny, home):
    report = data_report(load_competition(tiny), progress=False, samples_per_class=2)
    out = home / "reports" / "tiny"
    for text in ((out / "data.md").read_text(), (out / "data.json").read_text()):
        assert str(home) not in text
    assert "Raw files: `data/raw/tiny`" in (out / "data.md").read_text()
    assert report["raw_dir"] == "data/raw/tiny" and report["sample_grid"] == "reports/tiny/samples.png"
    written = json.loads((out / "data.json").read_text())
    assert all(written[key] == report[key] for key in ("raw_dir", "sample_grid", "cache"))
    assert all((home / path / "images.npy").exists() for path in report["cache"].values())


def test_report_of_a_folder_outside_the_home_names_it_in_full(home, tmp_path_factory):
    from tests.conftest import write_class_folders

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    raw = write_class_folders(elsewhere, slug="outside", per_class=(2, 1, 1))
    report = data_report(load_competition(str(raw)), progress=False)
    assert report["raw_dir"] == str(raw) and report["sample_grid"] == "reports/outside/samples.png"


def test_report_on_a_competition_that_is_not_there_is_one_line(home):
    with pytest.raises(PipelineError, match="no config for competition 'nope'"):
        data_report(load_competition("nope"), progress=False)
    assert not (home / "reports").exists()
