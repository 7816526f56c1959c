import json

from tuning import bench_tune


def test_bench_tune_compares_pruners_on_one_seeded_space_and_writes_its_report(home, capsys):
    assert bench_tune.main(["--minutes", "0.05", "--classes", "3", "--per-class", "10", "--size", "16",
                            "--space", "epochs=1:3", "--space", "batch_size=8"]) == 0
    report = json.loads((home / "reports" / "bench-tune" / "bench-tune.json").read_text())
    assert report["source"].startswith("generated")  # no GIC data in a test home
    results = {r["pruner"]: r for r in report["results"]}
    assert list(results) == ["none", "hyperband", "median"]
    for r in results.values():
        assert r["trials_finished"] >= 1 and r["failed"] == 0
        assert r["trials_finished"] == r["complete"] + r["pruned"]
        assert r["trials_per_hour"] > 0 and r["wall_seconds"] > 0
    assert results["none"]["pruned"] == 0 and results["none"]["speedup"] == 1.0
    text = (home / "reports" / "bench-tune" / "bench-tune.md").read_text()
    assert "| hyperband |" in text and "target >= 2x" in text
    assert not (home / "tuning").exists()  # the studies lived in a temporary home
    assert "bench-tune.md" in capsys.readouterr().out
