import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import io

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines import cache as cache_module
from pipelines import data as data_module
from pipelines import decode
from pipelines.data import conform, load_dataset, load_split, load_split_cached
from tests.conftest import write_class_folders, write_competition

REPO = Path(__file__).resolve().parents[1]


def cache_entries(home, slug):
    root = home / "data" / "cache" / slug
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_load_dataset_reads_every_split(tiny):
    data = load_dataset(load_competition(tiny), seed=0, progress=False)
    assert data.train.images.shape == (36, 16, 16, 3) and data.train.images.dtype == np.uint8
    assert len(data.val) == 12 and len(data.test) == 12 and data.test.labels is None
    assert data.classes == [0, 1, 2] and data.num_classes == 3
    assert set(data.val.labels.tolist()) == {0, 1, 2}
    assert not data.holdout


def test_missing_val_split_gives_a_stratified_seeded_holdout(home):
    write_competition(home, slug="noval", per_class=(20, 0, 4), with_val=False)
    comp = load_competition("noval")
    a = load_dataset(comp, seed=3, progress=False)
    b = load_dataset(comp, seed=3, progress=False)
    assert a.val.ids == b.val.ids and a.holdout
    assert len(a.val) == 9 and np.bincount(a.val.labels).tolist() == [3, 3, 3]
    assert not set(a.val.ids) & set(a.train.ids)


def test_holdout_fraction_is_configurable(home):
    raw = write_competition(home, slug="frac", per_class=(20, 0, 4), with_val=False)
    toml = raw / "competition.toml"
    toml.write_text(toml.read_text().replace('num_classes = 3\n', 'num_classes = 3\nvalidation_fraction = 0.3\n'))
    data = load_dataset(load_competition("frac"), seed=0, progress=False)
    assert len(data.val) == 18 and len(data.train) == 42


def test_train_only_competition_loads_without_a_test_split(home):
    raw = write_competition(home, slug="trainonly", per_class=(10, 0, 4), with_val=False)
    for name in ("test.csv", "test_labels.csv", "sample_submission.csv"):
        (raw / name).unlink()
    comp = load_competition("trainonly")
    data = load_dataset(comp, seed=0, progress=False)
    assert data.test is None and len(data.train) + len(data.val) == 30
    with pytest.raises(PipelineError, match="no test split"):
        load_split(comp, "test", labelled=False, progress=False)


def test_string_labels_map_to_class_ids_in_sorted_order(tiny, home):
    csv = home / "data/raw/tiny/train.csv"
    frame = pd.read_csv(csv)
    frame["Class"] = frame["Class"].map({0: "cat", 1: "dog", 2: "emu"})
    frame.to_csv(csv, index=False)
    val = home / "data/raw/tiny/val.csv"
    pd.read_csv(val).assign(Class=lambda f: f.Class.map({0: "cat", 1: "dog", 2: "emu"})).to_csv(val, index=False)
    data = load_dataset(load_competition(tiny), seed=0, progress=False)
    assert data.classes == ["cat", "dog", "emu"]


def test_class_folders_are_detected_and_named_classes_keep_a_stable_order(home):
    write_class_folders(home, classes=("emu", "cat", "dog"))
    comp = load_competition("folders")
    assert comp.layout == "folders" and comp.splits["train"].csv is None and comp.has_split("test")
    data = load_dataset(comp, seed=0, progress=False)
    assert data.classes == ["cat", "dog", "emu"]
    assert data.train.ids[0] == "cat/cat_0.png" and data.train.images.shape == (18, 16, 16, 3)
    assert [data.classes[i] for i in data.val.labels] == [i.split("/")[0] for i in data.val.ids]
    assert len(data.test) == 6 and data.test.ids[0] == "cat_0.png"


def test_numeric_class_folders_sort_as_numbers_and_greyscale_is_detected(home):
    write_class_folders(home, slug="digits", classes=tuple(range(12)), per_class=(2, 1, 1), grey=True,
                        test_flat=False)
    comp = load_competition("digits")
    assert comp.channels == 1
    data = load_dataset(comp, seed=0, progress=False)
    assert data.classes == list(range(12)) and data.input_shape == (16, 16, 1)
    assert data.test.ids[0] == "0/0_0.png"


def test_a_folder_path_works_as_competition(home):
    write_class_folders(home, slug="elsewhere")
    comp = load_competition(str(home / "data" / "raw" / "elsewhere"))
    assert comp.slug == "elsewhere" and len(load_dataset(comp, seed=0, progress=False).train) == 18


def test_layout_in_the_config_overrides_detection(home):
    raw = write_class_folders(home, slug="pinned")
    pd.DataFrame({"file": ["cat/cat_0.png", "dog/dog_0.png"], "y": ["cat", "dog"]}).to_csv(raw / "train.csv",
                                                                                          index=False)
    (raw / "competition.toml").write_text('slug = "pinned"\nlayout = "folders"\nimage_size = [16, 16]\n')
    assert load_competition("pinned").splits["train"].images == "train"
    (raw / "competition.toml").write_text('slug = "pinned"\nlayout = "csv"\nimage_size = [16, 16]\n')
    comp = load_competition("pinned")
    assert (comp.splits["train"].csv, comp.image_column, comp.label_column) == ("train.csv", "file", "y")
    assert load_split(comp, "train", progress=False)[1].shape == (2, 16, 16, 3)


def test_greyscale_and_rgba_become_rgb():
    comp = type("C", (), {"channels": 3, "image_size": (16, 16)})()
    grey = np.full((16, 16), 128, np.uint8)
    rgba = np.dstack([np.full((16, 16, 3), 200, np.uint8), np.full((16, 16), 255, np.uint8)])
    assert conform(grey, comp).shape == (16, 16, 3)
    out = conform(rgba, comp)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and int(out[0, 0, 0]) == 200
    half = rgba.copy()
    half[..., 3] = 0  # transparent: composited over white
    assert int(conform(half, comp)[0, 0, 0]) == 255
    big = np.zeros((32, 32, 3), np.uint8)
    assert conform(big, comp).shape == (16, 16, 3)
    to_grey = type("C", (), {"channels": 1, "image_size": None})()
    assert conform(rgba, to_grey).shape == (16, 16, 1)


def test_mixed_files_load_with_the_configured_channels_and_size(tiny, home):
    raw = home / "data/raw/tiny"
    names = pd.read_csv(raw / "train.csv").Image
    io.imsave(raw / "train_images" / names[0], np.full((16, 16), 90, np.uint8), check_contrast=False)
    io.imsave(raw / "train_images" / names[1], np.full((24, 20, 4), 255, np.uint8), check_contrast=False)
    cached = load_split_cached(load_competition(tiny), "train", progress=False)
    assert cached.images.shape == (36, 16, 16, 3)
    assert (cached.images[0] == 90).all()
    assert cached.sources[0].tolist() == [16, 16, 1, 8] and cached.sources[1].tolist() == [24, 20, 4, 8]


def test_cache_reloads_without_decoding_and_is_memory_mappable(tiny, home, monkeypatch):
    comp = load_competition(tiny)
    first = load_split_cached(comp, "train", progress=False)
    assert first.decoded
    entry = first.cache_dir
    assert entry.parent == home / "data" / "cache" / "tiny"
    assert isinstance(np.load(entry / "images.npy", mmap_mode="r"), np.memmap)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(decode, "read_image", no_decoding)
    again = load_split_cached(comp, "train", progress=False)
    assert not again.decoded and again.cache_dir == entry
    np.testing.assert_array_equal(again.images, first.images)
    assert again.ids == first.ids and again.labels.tolist() == first.labels.tolist()


def test_a_changed_file_or_setting_is_noticed(tiny, home):
    comp = load_competition(tiny)
    first = load_split_cached(comp, "train", progress=False)
    raw = home / "data/raw/tiny"
    name = pd.read_csv(raw / "train.csv").Image[2]
    path = raw / "train_images" / name
    io.imsave(path, np.full((16, 16, 3), 7, np.uint8), check_contrast=False)
    os.utime(path, ns=(1, 1))  # a new mtime as well as new content
    second = load_split_cached(comp, "train", progress=False)
    assert second.decoded and second.cache_dir != first.cache_dir
    assert (second.images[2] == 7).all()
    assert cache_entries(home, "tiny") == [second.cache_dir.name]  # the stale entry is gone
    frame = pd.read_csv(raw / "train.csv")
    frame.loc[0, "Class"] = 1  # a label change alone
    frame.to_csv(raw / "train.csv", index=False)
    third = load_split_cached(comp, "train", progress=False)
    assert third.decoded and third.labels[0] == 1
    grey = load_split_cached(comp.replace(channels=1), "train", progress=False)
    assert grey.decoded and grey.images.shape[-1] == 1


def test_parallel_decoding_matches_sequential(tiny, home, monkeypatch):
    comp = load_competition(tiny)
    sequential = np.array(load_split_cached(comp, "train", progress=False, workers=1).images)
    (home / "data" / "cache").rename(home / "old-cache")
    monkeypatch.setattr(cache_module, "PARALLEL_MIN_IMAGES", 0)
    parallel = load_split_cached(comp, "train", progress=False, workers=2)
    assert parallel.decoded
    np.testing.assert_array_equal(parallel.images, sequential)


def test_a_bad_file_in_a_worker_is_named_and_nothing_is_cached(tiny, home, monkeypatch):
    raw = home / "data/raw/tiny"
    name = pd.read_csv(raw / "train.csv").Image[30]
    (raw / "train_images" / name).write_bytes(b"\x89PNG broken")
    monkeypatch.setattr(cache_module, "PARALLEL_MIN_IMAGES", 0)
    with pytest.raises(PipelineError, match=fr"{name}: not an image \(its format cannot be identified\)"):
        load_split_cached(load_competition(tiny), "train", progress=False, workers=2)
    assert cache_entries(home, "tiny") == []


def damage_competition(raw, damage):
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
    elif damage == "absolute_path":
        train.loc[0, "Image"] = str(raw / "train_images" / train.Image[1])
        train.to_csv(raw / "train.csv", index=False)
    elif damage == "unseen_label":
        val = pd.read_csv(raw / "val.csv")
        val.loc[0, "Class"] = 7
        val.to_csv(raw / "val.csv", index=False)
    elif damage == "corrupt_image":
        (raw / "train_images" / train.Image[0]).write_bytes(b"\x89PNG not really")
    elif damage == "truncated_image":
        path = raw / "train_images" / train.Image[5]
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
    elif damage == "empty_split":
        train.head(0).to_csv(raw / "train.csv", index=False)
    elif damage == "empty_image":
        (raw / "train_images" / train.Image[4]).write_bytes(b"")
    elif damage == "text_image":
        (raw / "train_images" / train.Image[4]).write_text("Image,Class\na.png,1\n")
    elif damage == "mixed_sizes":
        toml = raw / "competition.toml"
        toml.write_text(toml.read_text().replace("image_size = [16, 16]\n", ""))
        io.imsave(raw / "train_images" / train.Image[3], np.zeros((20, 20, 3), np.uint8), check_contrast=False)


BAD_INPUTS = [
    ("missing_image", "train_0_0.png: image file missing .*train.csv: row 2"),
    ("bad_column", "train.csv: no column"),
    ("duplicate_id", "train.csv: row 38: image id 'train_0_0.png' appears twice"),
    ("escaping_path", "train.csv: row 2: image path '../secret.png' leaves"),
    ("absolute_path", "train.csv: row 2: image path '/.*' leaves"),
    ("unseen_label", "val.csv: row 2: label 7 never appears in train"),
    ("corrupt_image", r"train_0_0.png: not an image \(its format cannot be identified\); replace or remove it"),
    ("truncated_image", "train_0_5.png: unreadable image"),
    ("empty_split", "train.csv: no rows; the train split is empty"),
    ("mixed_sizes", "train_0_3.png: size 20x20 differs from 16x16"),
    ("empty_image", r"train_0_4.png: empty file \(0 bytes\); replace or remove it"),
    ("text_image", r"train_0_4.png: not an image \(its format cannot be identified\); replace or remove it"),
]


@pytest.mark.parametrize("damage, message", BAD_INPUTS)
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_cached(tiny, home, damage, message):
    raw = home / "data/raw/tiny"
    damage_competition(raw, damage)
    with pytest.raises(PipelineError, match=message) as err:
        load_dataset(load_competition(tiny), seed=0, progress=False)
    assert "\n" not in str(err.value)
    assert cache_entries(home, "tiny") == []  # not even a half-written entry


@pytest.mark.parametrize("damage, message", [BAD_INPUTS[1], BAD_INPUTS[7], BAD_INPUTS[9]])
def test_kip_data_turns_bad_input_into_one_line_and_exit_2(tiny, home, damage, message):
    damage_competition(home / "data/raw/tiny", damage)
    result = subprocess.run([sys.executable, "-m", "kip", "data", "--competition", "tiny"],
                            capture_output=True, text=True, cwd=home,
                            env={**os.environ, "KIP_HOME": str(home), "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]  # the rest is the progress bar
    assert len(errors) == 1 and errors[0].startswith("error: ") and result.stderr.rstrip().endswith(errors[0])
    assert re.search(message, errors[0])
    assert cache_entries(home, "tiny") == []


def test_empty_class_folder_split_is_refused(home):
    raw = write_class_folders(home, slug="emptyval")
    for path in (raw / "val").rglob("*.png"):
        path.unlink()
    comp = load_competition("emptyval")
    with pytest.raises(PipelineError, match="val: no images; the val split is empty"):
        load_dataset(comp, seed=0, progress=False)


def test_unseen_class_folder_in_val_is_refused(home):
    raw = write_class_folders(home, slug="unseen")
    (raw / "val" / "cat").rename(raw / "val" / "yak")
    with pytest.raises(PipelineError, match="val: folder yak/: label 'yak' never appears in train"):
        load_dataset(load_competition("unseen"), seed=0, progress=False)


def test_a_csv_competition_without_config_is_detected_even_with_ids_lacking_the_extension(home):
    raw = write_competition(home, slug="bare", per_class=(5, 0, 2), with_val=False)
    (raw / "competition.toml").unlink()
    for split in ("train", "test"):
        frame = pd.read_csv(raw / f"{split}.csv").rename(columns={"Image": "id"})
        frame["id"] = frame["id"].str.removesuffix(".png")
        frame.rename(columns={"Class": "label"}).to_csv(raw / f"{split}.csv", index=False)
    comp = load_competition("bare")
    assert (comp.layout, comp.image_column, comp.label_column, comp.image_extension) == ("csv", "id", "label", ".png")
    assert comp.splits["test"].images == "test_images" and comp.channels == 3
    data = load_dataset(comp, seed=0, progress=False)
    assert len(data.train) + len(data.val) == 15 and data.test.ids[0] == "test_0_0"


# --- detection: a split whose CSV exists is that split ----------------------------------------------------------

def bare_competition(home, slug="bare2", with_val=True):
    """A CSV competition without config: train, val and test CSVs beside their image folders."""
    raw = write_competition(home, slug=slug, per_class=(5, 2, 2), with_val=with_val)
    (raw / "competition.toml").unlink()
    return raw


def test_detection_keeps_a_split_whose_first_image_is_missing_and_loading_names_the_file(home):
    raw = bare_competition(home)
    for split in ("val", "test"):
        (raw / f"{split}_images" / pd.read_csv(raw / f"{split}.csv").Image[0]).unlink()
    comp = load_competition("bare2")
    assert {n: (s.csv, s.images) for n, s in comp.splits.items()} == {
        "train": ("train.csv", "train_images"), "val": ("val.csv", "val_images"), "test": ("test.csv", "test_images")}
    with pytest.raises(PipelineError, match=r"val_0_0.png: image file missing \(.*val.csv: row 2\)"):
        load_dataset(comp, seed=0, progress=False)


def test_names_with_surrounding_spaces_find_their_files_and_keep_their_ids(home):
    raw = bare_competition(home, with_val=False)
    frame = pd.read_csv(raw / "train.csv")
    frame["Image"] = frame["Image"] + " "
    frame.loc[1, "Image"] = " " + frame.Image[1]
    frame.to_csv(raw / "train.csv", index=False)
    comp = load_competition("bare2")
    assert comp.splits["train"].images == "train_images" and comp.image_column == "Image"
    files = data_module.list_split(comp, "train")
    assert files.ids[:2] == ["train_0_0.png ", " train_0_1.png "]
    assert files.paths[1] == str(raw / "train_images" / "train_0_1.png")
    assert len(load_dataset(comp, seed=0, progress=False).train) > 0


def test_a_split_csv_whose_images_are_in_no_folder_is_one_line_naming_the_folders_tried(home):
    raw = bare_competition(home)
    (raw / "test_images").rename(raw / "elsewhere")
    with pytest.raises(PipelineError, match=r"test.csv: none of the first 6 images .*found in test_images/, test/, "
                                            r"images/, \./.*competition.toml") as err:
        load_competition("bare2")
    assert "\n" not in str(err.value)


def test_a_csv_with_a_byte_order_mark_and_NA_or_None_class_names_loads(home):
    raw = bare_competition(home)
    for split in ("train", "val"):
        frame = pd.read_csv(raw / f"{split}.csv")
        frame["Class"] = frame["Class"].map({0: "NA", 1: "None", 2: "null"})
        frame.to_csv(raw / f"{split}.csv", index=False, encoding="utf-8-sig")
    (raw / "test.csv").write_bytes(b"\xef\xbb\xbf" + (raw / "test.csv").read_bytes())
    comp = load_competition("bare2")
    assert (comp.image_column, comp.label_column) == ("Image", "Class") and comp.has_split("val")
    data = load_dataset(comp, seed=0, progress=False)
    assert data.classes == ["NA", "None", "null"] and len(data.test) == 6


def test_an_empty_label_cell_is_still_refused(tiny, home):
    path = home / "data/raw/tiny/train.csv"
    frame = pd.read_csv(path)
    frame["Class"] = frame["Class"].astype(str)
    frame.loc[3, "Class"] = ""
    frame.to_csv(path, index=False)
    with pytest.raises(PipelineError, match="train.csv: row 5: empty label"):
        load_dataset(load_competition(tiny), seed=0, progress=False)


# --- large images are reduced by block means before the anti-aliased resize -----------------------------------

def recorded_resizes(monkeypatch):
    from skimage import transform

    shapes, plain = [], transform.resize

    def recording(image, *args, **kwargs):
        shapes.append(image.shape)
        return plain(image, *args, **kwargs)

    monkeypatch.setattr(transform, "resize", recording)
    return shapes, plain


def test_a_large_image_is_block_reduced_before_the_resize_and_stays_close_to_the_plain_resize(monkeypatch):
    shapes, plain = recorded_resizes(monkeypatch)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 400)
    image = np.dstack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (400, 1)), rng.integers(0, 256, (400, 400))])
    image = image.astype(np.uint8)
    out = decode.conform_array(image, 3, (16, 16))
    assert shapes == [(33, 33, 3)]  # 400 // 12 = 33: within about 2x of 16, not 400x400
    reference = np.round(plain(image, (16, 16), order=1, preserve_range=True, anti_aliasing=True))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.mean(axis=(0, 1)) - reference.mean(axis=(0, 1))).max() < 1.5
    assert np.abs(out[..., :2].astype(int) - reference[..., :2]).max() <= 2  # the smooth channels, pixel by pixel
    shapes.clear()
    decode.conform_array(np.zeros((4000, 300), np.uint8), 1, (16, 16))  # each side by its own factor
    assert shapes == [(32, 33, 1)]


def test_an_image_within_4x_of_the_target_is_resized_as_before(monkeypatch):
    shapes, plain = recorded_resizes(monkeypatch)
    image = np.random.default_rng(1).integers(0, 256, (60, 50, 3)).astype(np.uint8)
    out = decode.conform_array(image, 3, (16, 16))
    assert shapes == [(60, 50, 3)]
    expected = np.clip(np.round(plain(image, (16, 16), order=1, preserve_range=True, anti_aliasing=True)), 0, 255)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def test_reducing_a_large_image_makes_no_float_copy_of_it():
    import tracemalloc

    image = np.full((1500, 1500, 3), 100, np.uint8)  # 6.75 MB; a float64 copy would be 54 MB
    tracemalloc.start()
    try:
        out = decode.conform_array(image, 3, (16, 16))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (out == 100).all() and peak < image.nbytes


