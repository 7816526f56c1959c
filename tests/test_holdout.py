"""The private hold-out of the benchmarks."""
import pytest

from competition.errors import PipelineError


def test_a_private_split_is_held_out_of_train_when_test_is_unlabelled_or_a_share_is_asked_for(tiny, home):
    import pandas as pd

    from competition.registry import load_competition
    from pipelines.data import load_dataset
    from pipelines.holdout import private_holdout

    assert private_holdout(load_competition(tiny), None, seed=0).slug == tiny  # its labelled test split
    derived = private_holdout(load_competition(tiny), 0.25, seed=0)  # asked for: a share of train
    assert derived.slug == "tiny-private25" and derived.test_labels == "test_labels.csv"
    raw = home / "data" / "raw" / "tiny-private25"
    train, held = pd.read_csv(raw / "train.csv"), pd.read_csv(raw / "test_labels.csv")
    assert (len(train), len(held)) == (27, 9) and held["Class"].value_counts().tolist() == [3, 3, 3]
    assert not set(train["Image"]) & set(held["Image"])
    dataset = load_dataset(derived, seed=42, progress=False)  # the original image files, read in place
    assert (len(dataset.train), len(dataset.val), len(dataset.test)) == (27, 12, 9)  # tiny's val split kept

    toml = home / "data" / "raw" / tiny / "competition.toml"
    toml.write_text(toml.read_text().replace('test_labels = "test_labels.csv"\n', ""))
    assert private_holdout(load_competition(tiny), None, seed=0).slug == "tiny-private15"  # unlabelled: 15%
    assert private_holdout(load_competition(tiny), 0.25, seed=1).slug == "tiny-private25"  # written once, kept
    assert pd.read_csv(raw / "test_labels.csv").equals(held)


@pytest.mark.parametrize("fraction, message", [
    (1.5, "HOLDOUT=1.5: the private share of train must be between 0 and 1"),
    (0.01, "HOLDOUT=0.01: The test_size = 1 should be greater or equal to the number of classes = 3"),
])
def test_a_bad_private_share_is_one_line_and_writes_nothing(tiny, home, fraction, message):
    from competition.registry import load_competition
    from pipelines.holdout import private_holdout

    with pytest.raises(PipelineError) as err:
        private_holdout(load_competition(tiny), fraction, seed=0)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert not list((home / "data" / "raw").glob("tiny-private*"))
