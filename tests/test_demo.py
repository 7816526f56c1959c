import hashlib

import pandas as pd
from skimage import io

from competition.download import prepare, ready_file
from competition.registry import load_competition


def digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_demo_is_built_in_the_reference_layout_and_is_deterministic(home):
    comp = load_competition("digits-demo")
    raw = prepare(comp)
    assert ready_file("digits-demo").exists()
    train, val, test = (pd.read_csv(raw / f"{s}.csv") for s in ("train", "val", "test"))
    assert list(train.columns) == ["Image", "Class"] and list(val.columns) == ["Image", "Class"]
    assert list(test.columns) == ["Image"]
    assert len(train) + len(val) + len(test) == 1797
    assert set(train.Class) == set(range(10)) and set(val.Class) == set(range(10))
    labels = pd.read_csv(raw / "test_labels.csv")
    assert labels.Image.tolist() == test.Image.tolist()
    sample = pd.read_csv(raw / "sample_submission.csv")
    assert list(sample.columns) == ["Image", "Class"] and sample.Image.tolist() == test.Image.tolist()
    image = io.imread(raw / "train_images" / train.Image[0])
    assert image.shape == (32, 32, 3) and image.dtype.name == "uint8" and image.max() > 100
    first = digest(raw)
    prepare(comp, force=True)
    assert digest(raw) == first
