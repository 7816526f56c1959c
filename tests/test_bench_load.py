from pipelines import cache as cache_module
from pipelines.bench_load import bench_set, main, run


def test_bench_generates_its_set_once_and_reports_the_three_figures(home, monkeypatch, capsys):
    comp = bench_set(40)
    first = sorted(p.stat().st_mtime_ns for p in (comp.raw_dir / "train_images").iterdir())
    assert len(first) == 40 and comp.raw_dir.is_relative_to(home / "data" / "bench")
    monkeypatch.setattr(cache_module, "PARALLEL_MIN_IMAGES", 0)
    figures = run(40, workers=2)
    assert sorted(p.stat().st_mtime_ns for p in (comp.raw_dir / "train_images").iterdir()) == first
    assert figures["images"] == 40 and figures["pixels_match"]
    for key in ("plain_loop_images_per_s", "cold_load_images_per_s", "cached_reload_s", "cold_vs_plain"):
        assert figures[key] > 0
    assert main(["--count", "40", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "plain skimage.io.imread loop" in out and "cached reload" in out
    assert (home / "reports" / "bench-load-40.json").exists()
