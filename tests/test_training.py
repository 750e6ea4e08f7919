"""The Trainer and the train / eval / predict / demo commands, on tiny synthetic data (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import segzoo
from conftest import REPO, shared_data_dir
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Callback, NonFiniteLossError, Trainer


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=24, size=32, seed=1)


def tiny_recipe(root: Path, **train) -> Recipe:
    return Recipe.from_dict({
        "model": {"decoder": "unet", "encoder": "plain",
                  "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8],
                                "upsampling": "bilinear"}},
        "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.25},
        "augment": {"crop_size": 32, "scale": [0.75, 1.25]},
        "train": {"epochs": 2, "batch_size": 4, "val_batch_size": 3, "lr": 0.01, "progress": False,
                  "plots": False, "deterministic": True, **train},
    })


def test_fit_writes_checkpoints_logs_and_plots(shapes, tmp_path):
    summary = Trainer(tiny_recipe(shapes, plots=True, ema_decay=0.9, amp="bf16", grad_accum=2,
                                  clip_grad_norm=1.0, channels_last=True), tmp_path).fit()
    assert summary["reason"] == "completed" and summary["epochs"] == 2 and summary["best"] is not None
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in records] == ["train", "val", "train", "val"]
    assert {"miou", "mdice", "pixel_acc", "mean_acc", "iou", "loss"} <= set(records[1])
    assert records[0]["images_per_s"] > 0 and records[0]["lr"] > 0
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "predictions.png").stat().st_size > 1000
    best = segzoo.from_pretrained(tmp_path / "best")
    assert best.meta.class_names == SHAPE_CLASSES and "miou" in best.meta.metrics
    assert json.loads((tmp_path / "best" / "transforms.json").read_text())["eval"]["transform"]
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "model.safetensors", "recipe.json", "training_state.pt", "transforms.json"]


class StopAtCall(torch.nn.Module):
    """Cross-entropy that asks the trainer to stop (as SIGINT would) at its ``n``-th call."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls, self.trainer = n, 0, None
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=255)

    def forward(self, logits, target):
        self.calls += 1
        if self.calls == self.n and self.trainer is not None:
            self.trainer.request_stop(signal.SIGINT)
        return self.ce(logits, target)


@pytest.mark.parametrize("stop_at", [3, 5])  # mid-epoch and at an epoch boundary (4 steps per epoch)
def test_interrupted_and_resumed_equals_uninterrupted(shapes, tmp_path, stop_at):
    recipe = tiny_recipe(shapes, epochs=2)
    Trainer(recipe, tmp_path / "full", loss=torch.nn.CrossEntropyLoss(ignore_index=255)).fit()
    loss = StopAtCall(stop_at)
    trainer = Trainer(recipe, tmp_path / "cut", loss=loss)
    loss.trainer = trainer
    summary = trainer.fit()
    assert summary["reason"] == "interrupted (SIGINT)"
    resumed = Trainer(recipe, tmp_path / "cut", resume=True, loss=torch.nn.CrossEntropyLoss(ignore_index=255))
    assert resumed.global_step == stop_at
    resumed.fit()
    full = segzoo.from_pretrained(tmp_path / "full" / "last" / "model.safetensors").state_dict()
    cut = segzoo.from_pretrained(tmp_path / "cut" / "last" / "model.safetensors").state_dict()
    for key in full:
        assert torch.equal(full[key], cut[key]), key


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(shapes, tmp_path):
    class Explodes(torch.nn.Module):
        calls = 0

        def forward(self, logits, target):
            Explodes.calls += 1
            value = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
            return value * float("nan") if Explodes.calls > 5 else value

    trainer = Trainer(tiny_recipe(shapes, epochs=3), tmp_path, loss=Explodes())
    # calls 1-4 train epoch 1, 5-6 validate it; call 7 (epoch 2, step 5) is the first NaN training loss
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, step 5.*last"):
        trainer.fit()
    state = torch.load(tmp_path / "last" / "training_state.pt", weights_only=True)
    assert state["epoch"] == 1  # the checkpoint of the last good epoch is intact
    assert segzoo.from_pretrained(tmp_path / "last" / "model.safetensors") is not None


def test_resume_with_other_classes_is_refused(shapes, tmp_path):
    Trainer(tiny_recipe(shapes, epochs=1), tmp_path).fit()
    other = tiny_recipe(shapes, epochs=2)
    other.data.classes = ["bg", "a", "b", "c"]
    with pytest.raises(ValueError, match=r"trained on classes \['background'.*the recipe has \['bg'"):
        Trainer(other, tmp_path, resume=True)


def _cli(*args, env=None, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "segzoo", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, **kw)


def _recipe_file(root: Path, path: Path, **train) -> Path:
    data = tiny_recipe(root, **train).to_dict()
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


def test_sigterm_saves_checkpoint_and_exits_cleanly(shapes, tmp_path):
    recipe = _recipe_file(shapes, tmp_path / "r.yaml", epochs=200, deterministic=False)
    proc = subprocess.Popen([sys.executable, "-m", "segzoo", "train", str(recipe), "-o", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "last").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # no-op once it has exited; never left running when the test fails
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in out
    state = torch.load(tmp_path / "run" / "last" / "training_state.pt", weights_only=True)
    assert state["global_step"] >= 4


def test_train_eval_predict_commands(shapes, tmp_path):
    recipe = _recipe_file(shapes, tmp_path / "r.yaml", epochs=1)
    run = _cli("train", str(recipe), "-o", str(tmp_path / "run"), "--set", "train.lr=0.02")
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "run" / "last" / "recipe.json").read_text())["train"]["lr"] == 0.02
    ev = _cli("eval", str(recipe), "-w", str(tmp_path / "run" / "best"), "--output", str(tmp_path / "m.json"))
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert 0 <= metrics["miou"] <= 1 and metrics["pairs"]["scored"] == 6 and metrics["pairs"]["found"] == 24
    assert "scoring 6 of 24 pairs: the val split" in ev.stderr and "eval: 6 of 6 images" in ev.stderr
    assert list(metrics["per_class"]) == SHAPE_CLASSES
    assert set(metrics["per_class"]["background"]) == {"iou", "dice", "accuracy", "pixels"}
    pred = _cli("predict", str(shapes / "images"), "-w", str(tmp_path / "run" / "best"), "-o", str(tmp_path / "p"))
    assert pred.returncode == 0, pred.stderr
    from PIL import Image

    ids = Image.open(tmp_path / "p" / "shape_0000.png")
    assert ids.size == (32, 32) and ids.mode == "L"
    overlay = Image.open(tmp_path / "p" / "shape_0000_overlay.png")
    assert overlay.mode == "RGB" and overlay.size == (384, 384)  # enlarged, so that the legend covers a corner only
    bad = _cli("predict", str(tmp_path / "nothing.png"), "-w", str(tmp_path / "run" / "best"))
    assert bad.returncode == 2 and "nothing.png" in bad.stderr
    wrong = _recipe_file(shapes, tmp_path / "w.yaml", epochs=1)
    text = wrong.read_text().replace("- triangle", "- pyramid")
    wrong.write_text(text)
    mismatch = _cli("eval", str(wrong), "-w", str(tmp_path / "run" / "best"))
    assert mismatch.returncode == 2 and "pyramid" in mismatch.stderr


def _run_group(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; on timeout the whole group (torchrun's workers too) is killed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{cmd} timed out after {timeout}s: {err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_ddp_on_two_cpu_processes_matches_single_process(shapes, tmp_path):
    """Metrics all-reduced across 2 gloo ranks equal one process's on the same data and weights."""
    recipe = _recipe_file(shapes, tmp_path / "r.yaml", epochs=1)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    train = _run_group([*torchrun, "-m", "segzoo", "train", str(recipe), "-o", str(tmp_path / "ddp")], 300)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "ddp" / "best" / "model.safetensors").exists()
    weights = str(tmp_path / "ddp" / "best")
    two = _run_group([*torchrun, "-m", "segzoo", "eval", str(recipe), "-w", weights, "--split", "train",
                      "--output", str(tmp_path / "two.json")], 300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _cli("eval", str(recipe), "-w", weights, "--split", "train", "--output", str(tmp_path / "one.json"))
    assert one.returncode == 0, one.stderr
    a, b = json.loads((tmp_path / "one.json").read_text()), json.loads((tmp_path / "two.json").read_text())
    assert a["miou"] == b["miou"] and a["per_class"] == b["per_class"] and a["pixel_acc"] == b["pixel_acc"]


def test_demo_command(tmp_path):
    run = _cli("demo", "--seconds", "4", "--images", "24", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "demo.json").read_text())
    assert result["n_predictions"] == 4 and result["best_miou"] is not None and len(result["plots"]) == 2


@pytest.mark.parametrize("name", ["camvid", "nuclei", "aerial"])
def test_recipe_smoke_on_real_data(name, tmp_path):
    if not (shared_data_dir() / name).is_dir():
        pytest.skip(f"real data not found at {shared_data_dir() / name} (set SEGZOO_DATA)")
    from segzoo.core.errors import MissingFileError
    from segzoo.encoders.weights import resolve_encoder_weights
    from segzoo.training.recipe import Recipe

    encoder_weights = Recipe.load(name).model.overrides.get("encoder_weights")
    try:
        if encoder_weights is not None:
            resolve_encoder_weights(encoder_weights)
    except MissingFileError:
        pytest.skip(f"the {name} recipe's ImageNet weights {encoder_weights!r} are not found (set SEGZOO_WEIGHTS)")
    sets = ["data.limit=4", "train.epochs=1", "train.max_steps_per_epoch=2", "augment.crop_size=64",
            "train.batch_size=2", "augment.eval_max_size=192", "train.plots=false"]
    args = [a for s in sets for a in ("--set", s)]
    run = _cli("train", name, "-o", str(tmp_path), *args, cwd=str(REPO),
               env={"SEGZOO_DATA": str(shared_data_dir().resolve())})
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["reason"] == "completed" and summary["best"] is not None


@pytest.mark.parametrize("train", [
    {"optimizer": "sgd", "scheduler": "onecycle"},
    {"scheduler": "cosine", "warmup_steps": 2, "encoder_lr_mult": 0.1, "freeze_encoder_epochs": 1},
    {"scheduler": "plateau", "loss": "0.5*ce+lovasz", "class_weights": [1.0, 2.0, 2.0, 2.0]},
    {"scheduler": "none", "loss": "focal+dice", "freeze_encoder_epochs": -1},
])
def test_optimisers_schedules_losses_run(shapes, tmp_path, train):
    trainer = Trainer(tiny_recipe(shapes, epochs=2, **train), tmp_path)
    frozen_before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    summary = trainer.fit()
    assert summary["reason"] == "completed" and summary["epochs"] == 2
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert set(lrs) >= {"encoder", "head"}
    if train.get("freeze_encoder_epochs") == -1:  # frozen for the whole run: encoder weights unchanged
        for k, v in trainer.model.encoder.state_dict().items():
            assert torch.equal(v, frozen_before[k]), k


def test_early_stopping(shapes, tmp_path):
    # a learning rate of ~0 cannot improve the metric after the first validation
    summary = Trainer(tiny_recipe(shapes, epochs=10, lr=1e-12, early_stopping=2), tmp_path).fit()
    assert summary["reason"] == "early_stopping" and summary["epochs"] == 3 and summary["best_epoch"] == 1


def test_bad_train_settings_are_named():
    with pytest.raises(ValueError, match="train.optimizer must be one of"):
        Recipe.from_dict({"model": {"name": "unet_r18"}, "data": {"root": ".", "classes": ["a"]},
                          "train": {"optimizer": "adam"}})
    with pytest.raises(ValueError, match=r"recipe section 'train': unknown key\(s\) \['epoch'\]"):
        Recipe.from_dict({"model": {"name": "unet_r18"}, "data": {"root": ".", "classes": ["a"]},
                          "train": {"epoch": 3}})


def test_freeze_encoder_bn_keeps_statistics_and_trains_weights(shapes, tmp_path):
    trainer = Trainer(tiny_recipe(shapes, epochs=1, freeze_encoder_bn=True), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.encoder.state_dict().items()}
    trainer.fit()
    after = trainer.model.encoder.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    convs = [k for k in before if k.endswith("weight") and before[k].ndim == 4]
    assert any(not torch.equal(before[k], after[k]) for k in convs)
    decoder_stats = [v for k, v in trainer.model.state_dict().items() if k.startswith("decoder") and "running_var" in k]
    assert decoder_stats and any(not torch.equal(v, torch.ones_like(v)) for v in decoder_stats)  # decoder BN trains


class Recorder(Callback):
    """Records every hook call; stops the run with its own reason after ``stop_after`` epochs."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.stop_after = stop_after

    def on_fit_start(self, trainer):
        self.calls.append(("fit_start", trainer.epoch))

    def on_step_end(self, trainer, loss):
        assert loss > 0
        self.calls.append(("step", trainer.global_step))

    def on_validation_end(self, trainer, metrics, improved):
        self.calls.append(("validation", improved, (trainer.output_dir / "best").is_dir() or not improved))

    def on_epoch_end(self, trainer, record):
        self.calls.append(("epoch", record["epoch"]))
        if self.stop_after is not None and record["epoch"] >= self.stop_after:
            trainer.stop("enough")

    def on_fit_end(self, trainer, summary):
        self.calls.append(("fit_end", summary["reason"]))


def test_callbacks_see_every_step_epoch_and_validation_and_can_stop_the_run(shapes, tmp_path):
    recorder = Recorder(stop_after=2)
    trainer = Trainer(tiny_recipe(shapes, epochs=5), tmp_path, callbacks=[recorder])
    summary = trainer.fit()
    assert summary["reason"] == "enough" and summary["epochs"] == 2
    steps = trainer.steps_per_epoch
    expected = [("fit_start", 0)]
    for epoch in (1, 2):
        expected += [("step", (epoch - 1) * steps + i) for i in range(1, steps + 1)]
        expected += [("validation", recorder.calls[len(expected)][1], True), ("epoch", epoch)]
    assert recorder.calls == expected + [("fit_end", "enough")]
    assert recorder.calls[1 + steps][1] is True  # the first validation is always the best so far
    assert (tmp_path / "last").is_dir() and trainer.interrupted is None


def test_run_steps_trains_outside_fit_and_times_each_step(shapes, tmp_path):
    recorder = Recorder()
    trainer = Trainer(tiny_recipe(shapes, grad_accum=2), tmp_path, callbacks=[recorder])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    steps = trainer.run_steps(3)  # the training set: 18 images, 2 micro-batches of 4 per step, wraps around
    assert len(steps) == 3 and all(s["seconds"] > 0 and s["loss"] > 0 for s in steps)
    assert trainer.global_step == 3 and recorder.calls == [("step", 1), ("step", 2), ("step", 3)]
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing logged or checkpointed
    images, masks = torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="ran out after 0 of 1 steps"):
        trainer.run_steps(1, [(images, masks)])  # grad_accum 2 needs two batches


@pytest.mark.parametrize("monitor,values,best", [("miou", [0.2, 0.5, 0.4], 0.5), ("loss", [0.9, 0.4, 0.6], 0.4)])
def test_monitor_knows_its_direction(monitor, values, best):
    from segzoo.training.metrics import Monitor

    m, kept = Monitor.of(monitor), None
    for v in values:
        kept = v if m.improved(v, kept) else kept
    assert kept == best and not m.improved(float("nan"), kept)
    with pytest.raises(ValueError, match="cannot monitor 'iou'"):
        Monitor.of("iou")


def test_plateau_schedule_follows_the_monitor_direction(shapes, tmp_path):
    trainer = Trainer(tiny_recipe(shapes, scheduler="plateau", monitor="loss"), tmp_path)
    assert trainer.scheduler.mode == "min"
    trainer = Trainer(tiny_recipe(shapes, scheduler="plateau"), tmp_path / "b")
    assert trainer.scheduler.mode == "max"


def test_recipe_inherits_the_encoder_weights_normalisation_unless_it_states_one(shapes, tmp_path):
    """A recipe without ``augment.preprocessing`` trains with the normalisation its encoder weights' header
    states (the EfficientNet-Lite / MobileNetV2 files: mean = std = 0.5), not ImageNet's; a stated one wins."""
    from segzoo.core.config import Preprocessing
    from segzoo.storage.format import write_weights

    seed = Trainer(tiny_recipe(shapes), tmp_path / "seed").model
    seed.meta.preprocessing = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    weights = write_weights(seed, tmp_path / "seed.safetensors")
    recipe = tiny_recipe(shapes)
    recipe.model.overrides["encoder_weights"] = str(weights)
    with pytest.warns(UserWarning, match="ignored"):
        inherited = Trainer(recipe, tmp_path / "inherited").model.meta.preprocessing
    assert inherited.mean == (0.5, 0.5, 0.5) and inherited.std == (0.5, 0.5, 0.5)
    recipe.augment.preprocessing = {"mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]}
    with pytest.warns(UserWarning, match="ignored"):
        stated = Trainer(recipe, tmp_path / "stated").model.meta.preprocessing
    assert stated.mean == (0.4, 0.4, 0.4)
