"""Knowledge distillation: the losses against hand-computed values, the ignore index, the teacher's effect on the
student's gradient, class checks before any work, resume and provenance in the student's card."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import segzoo
from segzoo.cli import main
from segzoo.core.config import Preprocessing
from segzoo.data.normalize import normalize
from segzoo.data.synthetic import SHAPE_CLASSES, write_shapes_dataset
from segzoo.training.distill import ChannelWiseDistillation, PixelKLDistillation
from segzoo.training.recipe import Recipe
from segzoo.training.trainer import Trainer

TINY = {"decoder": "unet", "encoder": "plain",
        "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8], "upsampling": "bilinear"}}


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _softmax(values: list[float]) -> list[float]:
    e = [math.exp(v) for v in values]
    return [v / sum(e) for v in e]


def test_pixel_kl_matches_a_hand_computed_value():
    s = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2 classes, 1, 2 pixels)
    t = torch.tensor([[[[2.0, 1.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[0, 1]]])
    for temp in (1.0, 2.0):
        expected = sum(_kl(_softmax([t[0, 0, 0, i] / temp, t[0, 1, 0, i] / temp]),
                           _softmax([s[0, 0, 0, i] / temp, s[0, 1, 0, i] / temp])) for i in range(2)) / 2 * temp ** 2
        got = PixelKLDistillation(temp)(s, t, target)
        assert got.item() == pytest.approx(expected, rel=1e-6)


def test_channel_wise_distillation_matches_a_hand_computed_value():
    s = torch.tensor([[[[1.0, 0.0, 3.0]], [[0.0, 2.0, 1.0]]]])  # (1, 2 channels, 1, 3 pixels)
    t = torch.tensor([[[[2.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]])
    target = torch.tensor([[[0, 1, 1]]])
    temp = 4.0
    expected = sum(_kl(_softmax([v / temp for v in t[0, c, 0].tolist()]),
                       _softmax([v / temp for v in s[0, c, 0].tolist()])) for c in range(2)) / 2 * temp ** 2
    assert ChannelWiseDistillation(temp)(s, t, target).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", [PixelKLDistillation(1.0, ignore_index=9), ChannelWiseDistillation(4.0, 9)])
def test_ignored_pixels_change_nothing_and_give_finite_gradients(loss):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 5, generator=g, requires_grad=True)
    t = torch.randn(2, 3, 4, 5, generator=g)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    target[:, 0] = 9
    target[1] = 9  # the second image has no labelled pixel at all
    base = loss(s, t, target)
    s2, t2 = s.detach().clone(), t.clone()
    s2[:, :, 0], t2[:, :, 0] = 50.0, -50.0  # wild values where nothing is labelled
    s2[1], t2[1] = 7.0, -7.0
    assert loss(s2, t2, target).item() == pytest.approx(base.item(), rel=1e-5)
    base.backward()
    assert torch.isfinite(s.grad).all() and s.grad[:, :, 0].abs().max() == 0 and s.grad[1].abs().max() == 0


def test_teacher_logits_are_resized_to_the_students():
    s, t = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 4, 4)
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    for loss in (PixelKLDistillation(), ChannelWiseDistillation()):
        assert torch.isfinite(loss(s, t, target))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_images=12, size=32, seed=2)


def _recipe(root: Path, distill: dict | None = None, **train) -> Recipe:
    return Recipe.from_dict({
        "model": TINY, "data": {"root": str(root), "classes": SHAPE_CLASSES, "val_fraction": 0.25},
        "augment": {"crop_size": 32}, **({"distill": distill} if distill else {}),
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.01, "progress": False, "plots": False, "deterministic": True,
                  **train}})


@pytest.fixture(scope="module")
def teacher(shapes, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    Trainer(_recipe(shapes, epochs=2), out).fit()
    model = segzoo.from_pretrained(out / "best")
    model.meta.preprocessing = Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # its own normalisation
    model.save_pretrained(str(out / "teacher"))
    return out / "teacher"


def test_a_teacher_changes_the_students_gradient_and_sees_its_own_normalisation(shapes, teacher, tmp_path):
    plain = Trainer(_recipe(shapes), tmp_path / "a")
    taught = Trainer(_recipe(shapes, {"teacher": str(teacher), "loss": "cwd", "weight": 2.0}), tmp_path / "b")
    taught.model.load_state_dict(plain.model.state_dict())
    images, masks = next(iter(plain._loader(plain.train_set, list(range(4)), 4, drop_last=True)))
    grads = []
    for trainer in (plain, taught):
        trainer.model.zero_grad()
        trainer._micro_step(images, masks, last_micro=True)
        grads.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    assert not torch.allclose(grads[0], grads[1])
    seen = []
    taught.teacher.model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    taught.teacher(images)
    expected = normalize(images, Preprocessing((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    assert torch.allclose(seen[0], expected)
    assert all(not p.requires_grad for p in taught.teacher.model.parameters()) and not taught.teacher.model.training


def test_a_decaying_distillation_weight_hands_the_student_over_to_the_labels(shapes, teacher, tmp_path):
    """``weight_schedule`` scales the distillation term by 1 at the first step, falling to 0 after the last
    (linear: halfway at half the run; cosine: likewise, flatter at both ends); at the end of a decaying run the
    student's gradient is the untaught one's, at its start the constant schedule's."""
    recipe = _recipe(shapes, {"teacher": "x", "weight": 2.0, "weight_schedule": "linear"})
    assert [recipe.distill.weight_at(p) for p in (0.0, 0.5, 1.0, 1.5)] == [2.0, 1.0, 0.0, 0.0]
    cosine = _recipe(shapes, {"teacher": "x", "weight": 2.0, "weight_schedule": "cosine"}).distill
    assert cosine.weight_at(0.5) == pytest.approx(1.0) and cosine.weight_at(0.1) == pytest.approx(1.0 + math.cos(
        math.pi * 0.1))
    with pytest.raises(ValueError, match=r"distill\.weight_schedule must be one of \['constant', 'linear', "
                                         r"'cosine'\], got 'step'"):
        _recipe(shapes, {"teacher": "x", "weight_schedule": "step"})

    plain = Trainer(_recipe(shapes), tmp_path / "a")
    constant = Trainer(_recipe(shapes, {"teacher": str(teacher), "weight": 2.0}), tmp_path / "b")
    decaying = Trainer(_recipe(shapes, {"teacher": str(teacher), "weight": 2.0, "weight_schedule": "linear"}),
                       tmp_path / "c")
    for trainer in (constant, decaying):
        trainer.model.load_state_dict(plain.model.state_dict())
    images, masks = next(iter(plain._loader(plain.train_set, list(range(4)), 4, drop_last=True)))

    def loss(trainer: Trainer, step: int) -> float:
        trainer.global_step = step
        with torch.no_grad():
            return float(trainer._forward_loss(normalize(images, trainer.model.meta.preprocessing), masks.long(),
                                               images))

    end = plain.cfg.epochs * plain.steps_per_epoch
    assert loss(decaying, 0) == pytest.approx(loss(constant, 0)) != pytest.approx(loss(plain, 0))
    assert loss(decaying, end) == pytest.approx(loss(plain, end))
    assert decaying.model.meta.teacher["weight_schedule"] == "linear"


def test_wrong_classes_or_a_missing_teacher_fail_before_any_work(shapes, teacher, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("segzoo.training.trainer.build_pairs", lambda *a: calls.append(a) or [])
    other = Recipe.from_dict({**_recipe(shapes).to_dict(), "data": {
        "root": str(shapes), "classes": ["background", "disc", "square", "pyramid"], "val_fraction": 0.25},
        "distill": {"teacher": str(teacher)}})
    with pytest.raises(ValueError, match=r"teacher .* predicts 4 classes \['background', 'disc', 'square', "
                                         r"'triangle'\].*\['background', 'disc', 'square', 'pyramid'\]"):
        Trainer(other, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Trainer(_recipe(shapes, {"teacher": str(tmp_path / "nowhere")}), tmp_path / "b")
    assert calls == []  # no data was read
    with pytest.raises(ValueError, match=r"distill\.weight would be ignored: distill\.teacher is not set"):
        _recipe(shapes, {"weight": 2.0})
    with pytest.raises(ValueError, match=r"distill\.loss must be one of \['cwd', 'kl'\]"):
        _recipe(shapes, {"teacher": "x", "loss": "mse"})


def test_distilled_run_resumes_and_names_its_teacher(shapes, teacher, tmp_path):
    from segzoo.core.io import sha256_of

    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(_recipe(shapes, epochs=2).to_dict()))
    # a distill setting next to --teacher is checked against that teacher, not refused as unused
    assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "--teacher", str(teacher),
                 "--set", "train.epochs=1", "--set", "distill.temperature=2"]) == 0
    assert main(["train", str(recipe), "-o", str(tmp_path / "run"), "--teacher", str(teacher), "--resume"]) == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(r["split"], r["epoch"]) for r in records] == [("train", 1), ("val", 1), ("train", 2), ("val", 2)]
    student = segzoo.from_pretrained(tmp_path / "run" / "best")
    digest = sha256_of(teacher / "model.safetensors")
    assert student.meta.teacher["sha256"] == digest and student.meta.teacher["loss"] == "kl"
    assert student.meta.teacher["temperature"] == "2.0"
    assert digest in (tmp_path / "run" / "best" / "README.md").read_text()
    saved = json.loads((tmp_path / "run" / "last" / "recipe.json").read_text())
    assert saved["distill"]["teacher"] == str(teacher)


def test_a_fine_tune_of_a_distilled_model_still_names_the_teacher(shapes, teacher, tmp_path):
    """Two stages, distilled then fine-tuned without a teacher: the second's card names the first stage's teacher
    (sha256) as an earlier stage, and a third stage keeps both earlier stages, oldest first."""
    from segzoo.core.io import sha256_of
    from segzoo.storage.save import lineage

    Trainer(_recipe(shapes, {"teacher": str(teacher)}), tmp_path / "kd").fit()
    stages = [tmp_path / "kd" / "best"]
    for name in ("ft", "ft2"):
        recipe = Recipe.from_dict({**_recipe(shapes).to_dict(), "model": {"pretrained": str(stages[-1])}})
        Trainer(recipe, tmp_path / name).fit()
        stages.append(tmp_path / name / "best")
    tuned = segzoo.from_pretrained(stages[1])
    digests = [sha256_of(stage / "model.safetensors") for stage in stages]
    assert tuned.meta.teacher is None and tuned.meta.parent["sha256"] == digests[0]
    assert tuned.meta.ancestry == [{"source": str(stages[0]), "sha256": digests[0], "teacher": str(teacher),
                                    "teacher_sha256": sha256_of(teacher / "model.safetensors")}]
    tuned_from, earlier = lineage(tuned.meta)
    assert tuned_from.startswith(f"Fine-tuned from `{stages[0]}`")
    assert earlier == (f"Earlier, `{stages[0]}` (sha256 `{digests[0]}`) was distilled from the teacher `{teacher}` "
                       f"(sha256 `{sha256_of(teacher / 'model.safetensors')}`).")
    assert "\n- " + earlier in (stages[1] / "README.md").read_text()
    last = segzoo.from_pretrained(stages[2])
    assert [stage["source"] for stage in last.meta.ancestry] == [str(stages[0]), str(stages[1])]
    assert last.meta.ancestry[1]["parent_sha256"] == digests[0] and "teacher" not in last.meta.ancestry[1]
    assert lineage(last.meta)[1].startswith(f"Earlier, `{stages[1]}` (sha256 `{digests[1]}`) was fine-tuned from")
    assert lineage(last.meta)[2] == earlier


def test_a_malformed_ancestry_is_a_clear_error():
    from segzoo.core.config import ModelMeta

    with pytest.raises(TypeError, match=r"meta ancestry must be a list of mappings of strings .*\{'sha256': 7\}"):
        ModelMeta(ancestry=[{"sha256": 7}])
    with pytest.raises(ValueError, match=r"model meta: ancestry: expected list\[dict\[str, str\]\], got 'teacher"):
        ModelMeta.from_dict({"ancestry": "teacher.safetensors"})  # a header read from a file


def test_teacher_margin_scores_both_models_on_the_same_augmented_batches_and_on_val(shapes, teacher, tmp_path):
    """benchmarks.teacher_margin: a model against itself has no margin; a trained teacher against a student that
    predicts one class everywhere has a positive one on the augmented training batches, the difference of their
    scores; the batches are the recipe's crops; a student of other classes is refused; the results file is
    written."""
    from benchmarks.teacher_margin import main as margin_main
    from benchmarks.teacher_margin import measure, training_batches

    recipe = _recipe(shapes)
    one_class = tmp_path / "one-class"
    student = recipe.model.build(len(SHAPE_CLASSES))
    with torch.no_grad():  # a student that calls every pixel the last class: worse than the teacher, surely
        student.head.weight.zero_()
        student.head.bias.copy_(torch.arange(len(SHAPE_CLASSES), dtype=torch.float32))
    student.save_pretrained(str(one_class))

    batches = list(training_batches(recipe, 6))
    assert [tuple(images.shape) for images, _ in batches] == [(4, 3, 32, 32), (2, 3, 32, 32)]
    assert all(images.dtype == torch.uint8 and masks.shape == images.shape[:1] + images.shape[2:]
               for images, masks in batches)
    with pytest.raises(ValueError, match=r"--images must be between 1 and the 9 training images, got 10"):
        list(training_batches(recipe, 10))

    three = tmp_path / "three-classes"
    recipe.model.build(3).save_pretrained(str(three))
    with pytest.raises(ValueError, match=r"student .*three-classes.* predicts 3 classes, the recipe's data has 4"):
        measure(recipe, str(teacher), str(three), images=6)

    itself = measure(recipe, str(teacher), str(teacher), images=6)
    assert itself["scores"]["teacher"] == itself["scores"]["student"]
    assert all(m == 0 for split in itself["margin"].values() for m in [split["miou"], *split["iou"]])

    against = measure(recipe, str(teacher), str(one_class), images=6)
    scores, margin = against["scores"], against["margin"]["training_batches"]
    assert margin["miou"] == round(scores["teacher"]["training_batches"]["miou"]
                                   - scores["student"]["training_batches"]["miou"], 2)
    assert margin["miou"] > 0 and len(margin["iou"]) == len(SHAPE_CLASSES)

    file = tmp_path / "tiny.json"  # the command line reads a recipe file
    file.write_text(json.dumps(recipe.to_dict()))
    out = tmp_path / "margin.json"
    written = margin_main(["--recipe", str(file), "--teacher", str(teacher), "--student", str(one_class),
                           "--student-name", "one class", "--images", "6", "--results", str(out)])
    assert json.loads(out.read_text())["margin"] == written["margin"] == against["margin"]
    assert written["student"] == "one class"
