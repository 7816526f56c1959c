import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.bench_tta import AUTO, VIEW_SETS, bench_run, main, private_labels, report
from pipelines.config import TrainConfig
from pipelines.evaluate import best_tta
from pipelines.inference import TTA_CHOICES
from pipelines.probabilities import read_probabilities
from pipelines.train import train


def test_view_sets_are_the_tta_choices_and_the_four_shift_ones():
    assert {name: VIEW_SETS[name] for name in TTA_CHOICES} == TTA_CHOICES
    assert VIEW_SETS["shift4"] == ("identity", "right", "left", "down", "up")
    assert len(VIEW_SETS["flip+shift4"]) == 10 and set(VIEW_SETS["flip+shift4"]) < set(TTA_CHOICES["flip+shift"])
    assert AUTO["auto"] == tuple(TTA_CHOICES)


def test_scores_a_finished_run_on_its_own_validation_ids_and_the_private_labels(tiny, home, capsys):
    run = train(TrainConfig(competition=tiny, epochs=2, batch_size=8, minutes=0, verbose=0)).run_dir
    result = bench_run(run)
    assert set(result["scores"]) == set(VIEW_SETS)
    # validation as training scored it: the same images, the same TTA pick
    saved = read_probabilities(run / "val_predictions.npz")
    by_tta = {c: saved.get(c) for c in TTA_CHOICES}
    for choice, probabilities in by_tta.items():
        assert result["scores"][choice][0] == pytest.approx(np.mean(probabilities.argmax(1) == saved.labels))
    assert result["picks"]["auto"] == best_tta(by_tta, saved.labels)[0]
    assert all(0 <= test <= 1 for _, test in result["scores"].values())
    main([str(run)])
    out = capsys.readouterr().out
    assert f"| {run.name} |" in out and "auto minus auto (four shifts)" in out
    assert (home / "reports" / "bench-tta" / "bench-tta.md").read_text().startswith("# bench-tta")


def test_a_competition_without_test_labels_is_one_line(tiny, home):
    from competition.registry import load_competition

    (home / "data" / "raw" / tiny / "test_labels.csv").unlink()
    with pytest.raises(PipelineError, match="tiny: no labelled test split to score on"):
        private_labels(load_competition(tiny), ["test_0_0.png"], [0, 1, 2])


def test_report_counts_the_runs_that_gained():
    def result(name, old, new):
        scores = {n: (0.5, 0.5) for n in VIEW_SETS} | {"shift": (0.9, new), "shift4": (0.9, old)}
        return {"run": name, "scores": scores, "picks": {"auto": "shift", "auto (four shifts)": "shift4"}}

    text = report([result("a", 0.80, 0.82), result("b", 0.70, 0.69)])
    assert "mean +0.50 points over 2 run(s) (1 up, 1 down)" in text


def test_a_private_label_no_class_has_counts_as_wrong_not_as_a_crash(tiny, home):
    from competition.registry import load_competition

    labels = home / "data" / "raw" / tiny / "test_labels.csv"
    labels.write_text(labels.read_text().replace("test_0_0.png,0", "test_0_0.png,7"))
    assert private_labels(load_competition(tiny), ["test_0_0.png", "test_1_0.png"], [0, 1, 2]).tolist() == [-1, 1]
