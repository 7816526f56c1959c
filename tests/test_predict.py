import numpy as np
import pandas as pd

from competition.config import load_competition
from pipelines.predict import predict, save_probabilities
from pipelines.train import TrainConfig, train
from submissions.writer import score_submission, submission_path, write_submission


def test_predict_averages_runs_and_writes_a_submission_in_sample_order(tiny, home):
    runs = [train(TrainConfig(competition=tiny, epochs=1, batch_size=8, seed=s, verbose=0)).run_dir for s in (1, 2)]
    one = predict(runs[:1], progress=False)
    both = predict(runs, progress=False)
    assert one.probabilities.shape == (12, 3)
    np.testing.assert_allclose(one.probabilities.sum(axis=1), 1, atol=1e-4)
    second = predict(runs[1:], progress=False)
    np.testing.assert_allclose(both.probabilities, (one.probabilities + second.probabilities) / 2, atol=1e-5)

    comp = load_competition(tiny)
    path = write_submission(comp, both.ids, both.labels, submission_path("ens"))
    sample = pd.read_csv(home / "data/raw/tiny/sample_submission.csv")
    written = pd.read_csv(path)
    assert list(written.columns) == ["Image", "Class"]
    assert written.Image.tolist() == sample.Image.tolist()
    assert set(written.Class) <= {0, 1, 2}
    assert 0 <= score_submission(comp, path)["test_accuracy"] <= 1

    saved = np.load(save_probabilities(both, runs[0] / "test_probabilities.npy"), allow_pickle=False)
    assert saved.shape == (12, 3) and saved.dtype == np.float32
    np.testing.assert_allclose(saved, both.probabilities, atol=1e-6)


def test_flip_tta_and_top_five_of_one_image(tiny, home):
    from pipelines.predict import top_classes

    run = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0)).run_dir
    plain = predict([run], progress=False)
    flipped = predict([run], progress=False, tta=True)
    np.testing.assert_allclose(flipped.probabilities.sum(axis=1), 1, atol=1e-4)
    assert not np.allclose(plain.probabilities, flipped.probabilities)

    image = home / "data/raw/tiny/test_images" / plain.ids[0]
    top = top_classes([run], image, k=5)
    assert [label for label, _ in top] and len(top) == 3  # only 3 classes
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    np.testing.assert_allclose(sorted(plain.probabilities[0], reverse=True), probs, atol=1e-4)
