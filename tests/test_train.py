import json

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from competition.errors import PipelineError
from pipelines import runs
from pipelines.config import TrainConfig
from pipelines.inputs import make_augmenter
from pipelines.recipe import WarmupSchedule, build_for_training, make_optimizer, resolve_precision
from pipelines.runs import latest_run, unfinished_run
from pipelines.train import train
from tests.conftest import FakeClock, ticking, write_competition


def test_train_writes_a_complete_run_folder(tiny, home):
    result = train(TrainConfig(competition=tiny, epochs=2, batch_size=8, verbose=0))
    run = result.run_dir
    assert run.parent == home / "runs" and run.name.startswith("cnn-")
    for name in ("model.keras", "normalization.npz", "config.json", "history.csv", "metrics.json",
                 "learning_curves.png", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    assert list((run / "logs").rglob("events.out.tfevents.*")), "TensorBoard logs"
    assert not (run / "backup").exists()  # removed once the run has finished
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["val_macro_f1"] <= 1.0
    assert metrics["val_log_loss"] > 0 and set(metrics["val_per_class"]) == {"0", "1", "2"}
    assert set(metrics["val_per_class"]["1"]) == {"precision", "recall", "f1", "support"}
    assert metrics == result.metrics
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "cnn" and config["epochs"] == 2 and config["classes"] == [0, 1, 2]
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert latest_run(tiny) == run
    assert not list(run.glob(".*tmp*"))


def test_lean_run_for_tuning_keeps_the_numbers_and_the_best_model_only(tiny, home):
    from competition.registry import load_competition
    from pipelines.data import load_dataset
    from pipelines.inference import predict_probabilities
    from pipelines.metrics import scores
    from pipelines.normalize import Standardizer

    result = train(TrainConfig(competition=tiny, epochs=3, batch_size=8, verbose=0), run_dir=home / "trial", lean=True)
    run = result.run_dir
    for name in ("model.keras", "normalization.npz", "config.json", "history.csv"):
        assert (run / name).is_file(), name
    for name in ("learning_curves.png", "confusion_matrix.png", "logs", "backup"):
        assert not (run / name).exists(), name
    assert not (home / "runs" / "latest-tiny.txt").exists()  # not a run for `make predict`
    # the metrics are those of the best epoch's weights, and model.keras holds those weights
    assert result.metrics["val_accuracy"] == pytest.approx(max(result.history["val_accuracy"]), abs=1e-6)
    dataset = load_dataset(load_competition(tiny), seed=42, progress=False)
    probs = predict_probabilities(keras.models.load_model(run / "model.keras", compile=False), dataset.val.images,
                                  Standardizer.load(run / "normalization.npz"))
    assert scores(dataset.val.labels, probs)["accuracy"] == pytest.approx(result.metrics["val_accuracy"])


def test_binary_competition_uses_one_sigmoid_unit(home):
    write_competition(home, slug="pair", classes=2, per_class=(10, 4, 2))
    result = train(TrainConfig(competition="pair", arch="resnet10", epochs=1, batch_size=8, verbose=0))

    model = keras.models.load_model(result.model_path)
    assert model.output_shape == (None, 1) and model.loss.name == "binary_crossentropy"


def test_same_seed_gives_the_same_initial_weights(tiny):
    from pipelines.models import build_model

    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(build_model("cnn", (16, 16, 3), 3).get_weights()[0])
    np.testing.assert_array_equal(*weights)


def test_a_learnable_task_is_learned(tiny):
    result = train(TrainConfig(competition=tiny, epochs=12, batch_size=8, learning_rate=3e-3, verbose=0))
    assert result.metrics["val_accuracy"] >= 0.6


def test_bad_settings_are_refused(tiny):
    with pytest.raises(PipelineError, match="unknown training setting"):
        TrainConfig().update(epoch=3)
    with pytest.raises(PipelineError, match="unknown optimizer"):
        train(TrainConfig(competition=tiny, epochs=1, optimizer="lion", verbose=0))


class StopAfter(keras.callbacks.Callback):
    """Simulates a killed run: raises after ``epochs`` epochs (BackupAndRestore has saved them by then)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs, self.begun = epochs, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.begun += 1

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def test_a_killed_run_resumes_from_its_last_finished_epoch_when_rerun(tiny, home):
    config = TrainConfig(competition=tiny, epochs=4, batch_size=8, minutes=0, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[StopAfter(2)])
    [run] = [p for p in (home / "runs").iterdir() if p.is_dir()]
    assert (run / "backup").is_dir() and not (run / "metrics.json").exists()
    assert unfinished_run(config) == run
    assert unfinished_run(config.update(seed=1)) is None  # other settings start a new run

    counter = StopAfter(99)
    result = train(config.update(verbose=0), callbacks=[counter])
    assert result.run_dir == run and counter.begun == 2  # epochs 3 and 4 only
    assert pd.read_csv(run / "history.csv").epoch.tolist() == [0, 1, 2, 3]
    assert result.metrics["epochs_run"] == 4 and unfinished_run(config) is None


def test_time_budget_plans_the_steps_and_completes_the_schedule(tiny):
    # each training step costs 1 s of an injected clock: 4 steps an epoch, a 30 s budget (98% of it planned)
    clock = FakeClock()
    config = TrainConfig(competition=tiny, epochs=500, batch_size=9, minutes=0.5, patience=1000, verbose=0)
    result = train(config, callbacks=[ticking(clock, lambda epoch: 1.0)], clock=clock)
    plan = json.loads((result.run_dir / "plan.json").read_text())
    # after the first epoch: 4 done + 6 whole epochs + 1 step of a last, partial one fit in 29.4 s
    assert plan["steps"] == 29 and plan["epochs"] == 8 and result.metrics["epochs_run"] == 8
    assert plan["spent_seconds"] == 29.0 <= 0.5 * 60  # the last epoch stopped part-way: 97% of the budget spent
    assert set(result.metrics["val_accuracy_by_tta"]) == {"none", "flip", "shift", "flip+shift"}  # views took 0 s
    assert "tta_skipped" not in result.metrics


def test_the_tta_choice_after_a_budget_fits_a_tenth_of_it_and_skips_mirrors_training_never_saw(tiny):
    # a 30 s budget leaves 3 s to choose the TTA; a validation pass (one view) takes 1 s: shift's 9 views do not fit
    clock = FakeClock()
    config = TrainConfig(competition=tiny, epochs=500, batch_size=18, minutes=0.5, patience=1000, verbose=0,
                         flip="none")
    result = train(config, callbacks=[ticking(clock, lambda epoch: 1.0, seconds_per_test_batch=1.0)], clock=clock)
    assert set(result.metrics["val_accuracy_by_tta"]) == {"none"} and result.metrics["tta"] == "none"
    assert result.metrics["tta_skipped"].startswith("TTA shift not tried") and "3 s" in result.metrics["tta_skipped"]


def test_time_budget_plans_again_when_epochs_get_faster_or_slower(tiny):
    clock = FakeClock()
    config = TrainConfig(competition=tiny, epochs=500, batch_size=9, minutes=1.0, patience=1000, verbose=0)
    # a busy machine during the first two epochs (3 s a step), then a free one (1 s a step)
    result = train(config, callbacks=[ticking(clock, lambda epoch: 3.0 if epoch < 2 else 1.0)], clock=clock)
    plan = json.loads((result.run_dir / "plan.json").read_text())
    assert "re-planned up" in plan["why"]
    # 24 s for the first two epochs, then 4 s epochs: 42 steps end at 58 s of the 58.8 planned
    assert plan["steps"] == 42 and result.metrics["epochs_run"] == 11 and plan["spent_seconds"] == 58.0
    slow = TrainConfig(competition=tiny, epochs=500, batch_size=9, minutes=1.0, patience=1000, verbose=0, seed=1)
    clock = FakeClock()
    result = train(slow, callbacks=[ticking(clock, lambda epoch: 1.0 if epoch < 2 else 4.0)], clock=clock)
    plan = json.loads((result.run_dir / "plan.json").read_text())
    assert "re-planned down" in plan["why"] and plan["spent_seconds"] <= 60 and plan["steps"] == 20


def test_schedules_warm_up_peak_and_decay():
    cosine = WarmupSchedule(1e-2, total_steps=100, warmup_steps=10, kind="cosine")
    lr = [float(cosine(s)) for s in range(100)]
    assert lr[0] < 2e-3 and abs(max(lr) - 1e-2) < 1e-6 and int(np.argmax(lr)) == 9 and lr[-1] < 1e-4
    cosine.set_total_steps(200)
    assert float(cosine(100)) > 4e-3  # halfway through the longer schedule
    onecycle = WarmupSchedule(1e-2, total_steps=100, kind="onecycle")
    lr = [float(onecycle(s)) for s in range(101)]
    assert abs(lr[0] - 1e-2 / 25) < 1e-6 and abs(lr[25] - 1e-2) < 1e-6 and lr[-1] < 1e-5
    with pytest.raises(PipelineError, match="unknown schedule"):
        WarmupSchedule(1e-3, 10, kind="step")


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_every_optimizer_is_built_with_weight_decay(name):
    optimizer = make_optimizer(TrainConfig(optimizer=name, weight_decay=0.01, learning_rate=0.1))
    assert optimizer.weight_decay == 0.01
    if name == "sgd":
        assert optimizer.nesterov and optimizer.momentum == 0.9
    if name == "rmsprop":  # its momentum is the setting's, not dropped when 0.5 or more
        assert optimizer.momentum == 0.9


def test_augmentation_presets_overrides_and_strength():
    pets = TrainConfig(augment="pets").augmentation()
    assert (pets["flip"], pets["rotation"], pets["zoom"], pets["brightness"]) == ("horizontal", 10.0, 0.1, 0.3)
    mine = TrainConfig(augment="pets", rotation=20, augment_strength=0.5).augmentation()
    assert mine["rotation"] == 10.0 and mine["zoom"] == 0.05
    assert make_augmenter(TrainConfig(augment="none")) is None
    with pytest.raises(PipelineError, match="unknown augment preset"):
        TrainConfig(augment="heavy").augmentation()


@pytest.mark.parametrize("extra", [dict(augment="pets"), dict(mixup=0.4), dict(mixup=0.4, cutmix=1.0)])
def test_augmenter_keeps_shapes_and_label_mass(extra):
    config = TrainConfig(translation=0.1, **extra)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 16, 16, 3)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]
    out_images, out_labels = make_augmenter(config, seed=1)(tf.constant(images), tf.constant(labels))
    assert out_images.shape == images.shape and out_labels.shape == labels.shape
    np.testing.assert_allclose(np.asarray(out_labels).sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(np.asarray(out_images), images)


def test_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    import pipelines.recipe as module

    monkeypatch.setattr(module.tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(module, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(module, "cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(module, "cpu_flags", lambda: {"avx2"})
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(module.tf.config, "list_physical_devices", lambda kind=None: ["gpu0"])
    assert resolve_precision("auto") == "mixed_float16"
    with pytest.raises(PipelineError, match="unknown precision"):
        resolve_precision("fp8")


def test_training_in_bfloat16_keeps_a_float32_head_and_policy(tiny):
    before = keras.mixed_precision.global_policy().name
    model, _ = build_for_training(TrainConfig(competition=tiny), (16, 16, 3), 3, 4, precision="mixed_bfloat16")
    assert keras.mixed_precision.global_policy().name == before
    assert model.get_layer("block1_conv").compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_a_schedule_ends_at_the_planned_step(kind):
    schedule = WarmupSchedule(1e-2, total_steps=50, warmup_steps=5, kind=kind)
    schedule.set_total_steps(120)  # the time budget re-planned
    assert float(schedule(119)) < 2e-4 and float(schedule(120)) == pytest.approx(0.0, abs=1e-9)
    assert float(schedule(5)) == pytest.approx(1e-2)
    if kind == "linear":
        assert float(schedule(62)) == pytest.approx(1e-2 * (1 - 57 / 115), rel=1e-5)


def test_the_weight_average_warms_up_so_a_short_run_does_not_keep_the_initial_weights():
    from pipelines.models import build_model

    x = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(16) % 3]

    def share_of_the_way(optimizer):
        """How far the average moved from the initial weights, as a share of how far the raw weights moved."""
        keras.utils.set_random_seed(0)
        model = build_model("cnn", (16, 16, 3), 3)
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
        initial = [w.numpy().copy() for w in model.trainable_weights]
        for _ in range(20):
            model.train_on_batch(x, y)
        raw = [w.numpy().copy() for w in model.trainable_weights]
        model.optimizer.finalize_variable_values(model.trainable_weights)  # the model now holds the average
        averaged = [w.numpy() for w in model.trainable_weights]
        moved = sum(float(np.sum((a - i) ** 2)) for a, i in zip(averaged, initial))
        return moved / sum(float(np.sum((r - i) ** 2)) for r, i in zip(raw, initial))

    ours = share_of_the_way(make_optimizer(TrainConfig(learning_rate=1e-2, ema=0.999)))
    keras_own = share_of_the_way(keras.optimizers.AdamW(1e-2, use_ema=True, ema_momentum=0.999))
    assert keras_own < 0.1  # 20 steps at 0.999: the average is still almost the initial weights
    assert ours > 0.3  # momentum (1 + t) / (10 + t) in the first steps: it follows the weights (0.93 here)


def test_ema_weights_are_scored_and_saved_when_they_validate_better(tmp_path):
    from pipelines.callbacks import KeepBest
    from pipelines.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("cnn", (16, 16, 3), 3)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2, use_ema=True, ema_momentum=0.9),
                  loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.arange(16) % 3]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)  # fit ends by putting the averaged weights in the model
    model.train_on_batch(x[:4], y[:4])  # one more step: the average (momentum 0.9) now lags the weights
    raw = model.get_weights()
    scored = []
    keep = KeepBest("val_accuracy", tmp_path / "model.keras", validate=lambda m: scored.append(m.get_weights()) or 1.0)
    keep.set_model(model)
    logs = {"val_accuracy": 0.5}
    keep.on_epoch_end(0, logs)
    assert logs["val_accuracy_ema"] == 1.0 and keep.best_source == "ema" and keep.best == 1.0
    assert not all(np.allclose(a, b) for a, b in zip(scored[0], raw))  # the averaged weights were scored
    saved = keras.models.load_model(tmp_path / "model.keras", compile=False).get_weights()
    assert all(np.allclose(a, b) for a, b in zip(saved, scored[0]))  # ... and saved
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), raw))  # training goes on from raw
    keep.validate = lambda m: 0.1  # now the raw weights are better, and not better than the best so far
    keep.on_epoch_end(1, {"val_accuracy": 0.9})
    assert keep.best_source == "ema" and keep.best == 1.0


def test_a_run_that_early_stopping_ended_says_so(tiny, home, monkeypatch):
    class StopAfterTwo(keras.callbacks.EarlyStopping):  # as if val_accuracy had stopped improving
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.stopped_epoch, self.model.stop_training = epoch, True

    with monkeypatch.context() as patch:
        patch.setattr(keras.callbacks, "EarlyStopping", StopAfterTwo)
        result = train(TrainConfig(competition=tiny, epochs=5, batch_size=8, minutes=0, patience=3, verbose=0))
    assert result.metrics["epochs_run"] == 2
    assert result.metrics["stopped_early"] == "no better val_accuracy in the last 3 epochs"
    assert "stopped early" in runs.run_summary(result.metrics)
    result = train(TrainConfig(competition=tiny, epochs=2, batch_size=8, minutes=0, verbose=0))
    assert "stopped_early" not in result.metrics and "stopped" not in runs.run_summary(result.metrics)
