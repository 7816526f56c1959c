import numpy as np
import pandas as pd
import pytest
from skimage import io

from competition.config import load_competition
from competition.errors import PipelineError
from pipelines.data import conform, load_dataset, load_split
from tests.conftest import write_competition


def test_load_dataset_reads_every_split(tiny):
    data = load_dataset(load_competition(tiny), seed=0, progress=False)
    assert data.train.images.shape == (36, 16, 16, 3) and data.train.images.dtype == np.uint8
    assert len(data.val) == 12 and len(data.test) == 12 and data.test.labels is None
    assert data.classes == [0, 1, 2] and data.num_classes == 3
    assert set(data.val.labels.tolist()) == {0, 1, 2}


def test_missing_val_split_gives_a_stratified_seeded_holdout(home):
    write_competition(home, slug="noval", per_class=(20, 0, 4), with_val=False)
    comp = load_competition("noval")
    a = load_dataset(comp, seed=3, progress=False)
    b = load_dataset(comp, seed=3, progress=False)
    assert a.val.ids == b.val.ids
    assert len(a.val) == 9 and np.bincount(a.val.labels).tolist() == [3, 3, 3]
    assert not set(a.val.ids) & set(a.train.ids)


def test_string_labels_map_to_class_ids_in_sorted_order(tiny, home):
    csv = home / "data/raw/tiny/train.csv"
    frame = pd.read_csv(csv)
    frame["Class"] = frame["Class"].map({0: "cat", 1: "dog", 2: "emu"})
    frame.to_csv(csv, index=False)
    val = home / "data/raw/tiny/val.csv"
    pd.read_csv(val).assign(Class=lambda f: f.Class.map({0: "cat", 1: "dog", 2: "emu"})).to_csv(val, index=False)
    data = load_dataset(load_competition(tiny), seed=0, progress=False)
    assert data.classes == ["cat", "dog", "emu"]


def test_greyscale_and_rgba_become_rgb():
    comp = type("C", (), {"channels": 3, "image_size": (16, 16)})()
    grey = np.full((16, 16), 128, np.uint8)
    rgba = np.dstack([np.full((16, 16, 3), 200, np.uint8), np.full((16, 16), 255, np.uint8)])
    assert conform(grey, comp).shape == (16, 16, 3)
    out = conform(rgba, comp)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and int(out[0, 0, 0]) == 200
    big = np.zeros((32, 32, 3), np.uint8)
    assert conform(big, comp).shape == (16, 16, 3)


@pytest.mark.parametrize("damage, message", [
    ("missing_image", "image file missing"),
    ("bad_column", "no column"),
    ("duplicate_id", "appears twice"),
    ("escaping_path", "leaves"),
    ("unseen_label", "never appears in train"),
    ("corrupt_image", "unreadable image"),
])
def test_bad_input_is_one_line_naming_the_file(tiny, home, damage, message):
    raw = home / "data/raw/tiny"
    train = pd.read_csv(raw / "train.csv")
    if damage == "missing_image":
        (raw / "train_images" / train.Image[0]).unlink()
    elif damage == "bad_column":
        train.rename(columns={"Class": "label"}).to_csv(raw / "train.csv", index=False)
    elif damage == "duplicate_id":
        pd.concat([train, train.head(1)]).to_csv(raw / "train.csv", index=False)
    elif damage == "escaping_path":
        train.loc[0, "Image"] = "../secret.png"
        train.to_csv(raw / "train.csv", index=False)
    elif damage == "unseen_label":
        val = pd.read_csv(raw / "val.csv")
        val.loc[0, "Class"] = 7
        val.to_csv(raw / "val.csv", index=False)
    elif damage == "corrupt_image":
        (raw / "train_images" / train.Image[0]).write_bytes(b"\x89PNG not really")
    with pytest.raises(PipelineError, match=message) as err:
        load_dataset(load_competition(tiny), seed=0, progress=False)
    assert "\n" not in str(err.value)


def test_mixed_sizes_without_resize_setting_are_refused(tiny, home):
    raw = home / "data/raw/tiny"
    toml = raw / "competition.toml"
    toml.write_text(toml.read_text().replace("image_size = [16, 16]\n", ""))
    name = pd.read_csv(raw / "train.csv").Image[3]
    io.imsave(raw / "train_images" / name, np.zeros((20, 20, 3), np.uint8), check_contrast=False)
    with pytest.raises(PipelineError, match="differs from"):
        load_split(load_competition(tiny), "train", progress=False)
