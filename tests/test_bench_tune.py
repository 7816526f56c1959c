import json

from tuning import bench_tune


def test_bench_tune_compares_pruners_on_one_seeded_space_and_writes_its_report(home, capsys):
    assert bench_tune.main(["--minutes", "0.05", "--classes", "3", "--per-class", "10", "--size", "16",
                            "--space", "epochs=1:3", "--space", "batch_size=8"]) == 0
    report = json.loads((home / "reports" / "bench-tune" / "bench-tune.json").read_text())
    assert report["source"].startswith("generated")  # no GIC data in a test home
    results = {r["pruner"]: r for r in report["results"]}
    assert list(results) == ["none", "sha", "median"]
    for r in results.values():
        assert r["trials_finished"] >= 1 and r["failed"] == 0
        assert r["trials_finished"] == r["complete"] + r["pruned"]
        assert r["trials_per_hour"] > 0 and r["wall_seconds"] > 0
    assert results["none"]["pruned"] == 0 and results["none"]["speedup"] == 1.0
    text = (home / "reports" / "bench-tune" / "bench-tune.md").read_text()
    assert "| sha |" in text and "target >= 2x" in text
    assert not (home / "tuning").exists()  # the studies lived in a temporary home
    assert "bench-tune.md" in capsys.readouterr().out


def test_bench_fidelity_trains_each_recipe_at_each_fidelity_and_ranks_them(tiny, home, capsys):
    from tuning import bench_fidelity

    assert bench_fidelity.main(["--competition", tiny, "--settings", "3", "--fidelity", "minutes=0.05 subset=0.5",
                                "--set", "epochs=1", "--set", "minutes=0.3", "--set", "verbose=0",
                                "--space", "batch_size=8"]) == 0
    report = json.loads((home / "reports" / "bench-fidelity" / "tiny-cnn.json").read_text())
    assert report["recipes"][0]["learning_rate"] == 2e-3 and len(report["recipes"]) == 3  # the default first
    assert list(report["results"]) == ["minutes=0.05 subset=0.5", "final minutes=0.3"]
    for result in report["results"].values():
        assert len(result["values"]) == 3 and None not in result["values"] and len(result["at_12"]) == 3
    rows = {r["fidelity"]: r for r in report["rows"]}
    assert rows["final minutes=0.3"]["spearman"] in (None, 1.0) and rows["final minutes=0.3"]["picks_best"]
    assert all(r["spearman"] is None or -1 <= r["spearman"] <= 1 for r in rows.values())
    text = (home / "reports" / "bench-fidelity" / "tiny-cnn.md").read_text()
    assert "| fidelity | Spearman with the final run |" in text and "| minutes=0.05 subset=0.5 |" in text
    assert "bench-fidelity: " in capsys.readouterr().out


def test_bench_tune_transfer_scores_tuned_and_default_on_the_private_split(tiny, home, capsys):
    from tuning import bench_transfer

    assert bench_transfer.main(["--competition", tiny, "--minutes", "1", "--trials", "2", "--check", "top=1",
                                "--set", "epochs=1", "--set", "minutes=0.6", "--set", "verbose=0",
                                "--space", "batch_size=8", "--pruner", "none"]) == 0
    report = json.loads((home / "reports" / "bench-tune-transfer" / "tiny-cnn.json").read_text())
    assert report["finished"] == 2 and report["private_images"] == 12  # tiny's labelled test split
    private = report["private"]
    assert 0 <= private["default"] <= 1 and 0 <= private["candidate"] <= 1
    expected = private["candidate"] if report["check"]["beats_default"] else private["default"]
    assert private["make_train"] == expected
    assert report["difference_points"] == round(100 * (expected - private["default"]), 2)
    assert not (home / "tuning" / "best-tiny-cnn.json").exists()  # the user's tuned settings are left alone
    text = (home / "reports" / "bench-tune-transfer" / "tiny-cnn.md").read_text()
    assert "difference, what make train uses minus the default" in text and "never loses" in text
    assert "target >= 20" in text


def test_bench_tune_transfer_holds_out_a_private_split_when_test_is_unlabelled(tiny, home):
    import pandas as pd

    from competition.registry import load_competition
    from pipelines.data import load_dataset
    from tuning.bench_transfer import private_holdout

    toml = home / "data" / "raw" / tiny / "competition.toml"
    toml.write_text(toml.read_text().replace('test_labels = "test_labels.csv"\n', ""))
    derived = private_holdout(load_competition(tiny), 0.25, seed=0)
    assert derived.slug == "tiny-private" and derived.test_labels == "test_labels.csv"
    raw = home / "data" / "raw" / "tiny-private"
    train, held = pd.read_csv(raw / "train.csv"), pd.read_csv(raw / "test_labels.csv")
    assert (len(train), len(held)) == (27, 9) and held["Class"].value_counts().tolist() == [3, 3, 3]
    assert not set(train["Image"]) & set(held["Image"])
    dataset = load_dataset(derived, seed=42, progress=False)  # the original image files, read in place
    assert len(dataset.train) + len(dataset.val) == 27 and len(dataset.test) == 9
    assert private_holdout(load_competition(tiny), 0.5, seed=0).slug == "tiny-private"  # written once, kept
