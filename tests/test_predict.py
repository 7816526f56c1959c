import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from competition.registry import load_competition
from pipelines.config import TrainConfig
from pipelines.predict import predict, save_probabilities
from pipelines.train import train
from submissions.sidecar import record_upload
from submissions.upload import Submitted
from submissions.writer import newest_submission, score_submission, submission_path, write_submission
from tests.conftest import write_class_folders


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

    saved = np.load(save_probabilities(both, path.with_suffix(".npz")), allow_pickle=False)
    assert saved["probabilities"].shape == (12, 3) and saved["probabilities"].dtype == np.float32
    np.testing.assert_allclose(saved["probabilities"], both.probabilities, atol=1e-6)
    assert saved["ids"].tolist() == both.ids and saved["classes"].tolist() == ["0", "1", "2"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_predict_in_a_process_that_never_built_a_model(tiny, home):
    # the saved model has our fused batch norm layer: loading it must not depend on pipelines.models being imported
    run = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, verbose=0)).run_dir
    code = ("import sys; from pipelines.predict import predict; "
            "print(' '.join(map(str, predict([sys.argv[1]], progress=False).labels)))")
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                          cwd=Path(__file__).parents[1], timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [str(label) for label in predict([run], progress=False).labels]


def test_flip_tta_and_top_five_of_one_image(tiny, home):
    from pipelines.predict import top_classes

    run = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0)).run_dir
    plain = predict([run], progress=False, tta="none")
    flipped = predict([run], progress=False, tta="flip")
    np.testing.assert_allclose(flipped.probabilities.sum(axis=1), 1, atol=1e-4)
    assert not np.allclose(plain.probabilities, flipped.probabilities)

    image = home / "data/raw/tiny/test_images" / plain.ids[0]
    top = top_classes([run], image, k=5, tta="none")
    assert [label for label, _ in top] and len(top) == 3  # only 3 classes
    probs = [p for _, p in top]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    np.testing.assert_allclose(sorted(plain.probabilities[0], reverse=True), probs, atol=1e-4)


def test_predicting_again_keeps_an_uploaded_submission_and_tta_gets_its_own_name(tiny, home):
    from kip import main

    run = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0)).run_dir
    assert main(["predict", "--competition", tiny]) == 0
    first = newest_submission(tiny)
    assert first.name.startswith(f"{run.name}-val") and first.with_suffix(".npz").exists()
    record_upload(first, tiny, "try", Submitted(message="Successfully submitted", ref=1))
    kept = [first, first.with_suffix(".json"), first.with_suffix(".npz")]
    before = [p.read_bytes() for p in kept]

    assert main(["predict", "--competition", tiny]) == 0
    second = newest_submission(tiny)
    assert second.name == f"{first.stem}-2.csv" and [p.read_bytes() for p in kept] == before
    saved = np.load(second.with_suffix(".npz"), allow_pickle=False)
    labels = dict(pd.read_csv(second, dtype=str).values.tolist())
    assert sorted(saved["ids"].tolist()) == sorted(labels)  # rows in the prediction's order, every id once
    assert [labels[i] for i in saved["ids"]] == [saved["classes"][k] for k in saved["probabilities"].argmax(1)]

    assert main(["predict", "--competition", tiny, "--tta", "1"]) == 0
    assert newest_submission(tiny).name.startswith(f"{run.name}-tta-flip-val")


def test_make_predict_on_class_folders_writes_file_names_and_class_names(home, capsys):
    from kip import main

    write_class_folders(home)
    train(TrainConfig(competition="folders", epochs=1, batch_size=8, minutes=0, verbose=0))
    assert main(["predict", "--competition", "folders", "--submission-header", "file,breed"]) == 0
    path = newest_submission("folders")
    written = pd.read_csv(path)
    assert list(written.columns) == ["file", "breed"] and set(written.breed) <= {"cat", "dog", "emu"}
    assert written.file.tolist() == sorted(p.name for p in (home / "data/raw/folders/test").iterdir())
    assert np.load(path.with_suffix(".npz"))["classes"].tolist() == ["cat", "dog", "emu"]
    assert main(["check-submission", "--competition", "folders"]) == 0
    assert f"check: {path}: OK, 6 rows" in capsys.readouterr().out
