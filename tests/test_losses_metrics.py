"""Losses (finite under AMP, ignore-aware) and confusion-matrix metrics against hand and numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segzoo.training.losses import (
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LovaszSoftmaxLoss,
    build_loss,
)
from segzoo.training.metrics import ConfusionMatrix


def test_hand_computed_confusion():
    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = cm.compute()
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / (1 + 0 - 0) = 0
    assert m["iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert m["miou"] == pytest.approx(1 / 3)
    assert m["pixel_acc"] == pytest.approx(3 / 5)
    assert m["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["dice"] == pytest.approx([2 / 4, 4 / 5, 0.0])


def test_absent_class_is_left_out_of_the_mean():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m = cm.compute()
    assert np.isnan(m["iou"][2]) and m["miou"] == 1.0


def numpy_reference(preds, targets, n, ignore):
    mat = np.zeros((n, n), np.int64)
    for p, t in zip(preds, targets):
        for pi, ti in zip(p.ravel(), t.ravel()):
            if ti != ignore:
                mat[ti, pi] += 1
    inter = np.diag(mat)
    union = mat.sum(0) + mat.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
    return mat, np.nanmean(iou)


def test_accumulated_over_dataset_not_averaged_per_batch():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, (2, 7, 9)) for _ in range(5)]
    targets = [np.where(rng.random((2, 7, 9)) < 0.1, 255, rng.integers(0, 4, (2, 7, 9))) for _ in range(5)]
    cm = ConfusionMatrix(4)
    per_batch = []
    for p, t in zip(preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
        single = ConfusionMatrix(4)
        single.update(torch.from_numpy(p), torch.from_numpy(t))
        per_batch.append(single.compute()["miou"])
    mat, miou = numpy_reference(preds, targets, 4, 255)
    assert cm.matrix.numpy().tolist() == mat.tolist()
    assert cm.compute()["miou"] == pytest.approx(miou)
    assert cm.compute()["miou"] != pytest.approx(np.mean(per_batch))  # the seed tutorial's flaw


def test_logits_accepted_and_shape_checked():
    cm = ConfusionMatrix(2)
    logits = torch.tensor([[[[2.0]], [[1.0]]]])  # (1, 2, 1, 1): class 0
    cm.update(logits, torch.tensor([[[0]]]))
    assert cm.matrix[0, 0] == 1
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(1, 2, 2), torch.zeros(1, 3, 3))


LOSS_CLASSES = [CrossEntropyLoss, DiceLoss, FocalLoss, LovaszSoftmaxLoss]


@pytest.mark.parametrize("cls", LOSS_CLASSES)
def test_losses_ignore_pixels_and_rank_predictions(cls):
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :2] = 255
    good = torch.nn.functional.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 10
    bad = torch.roll(good, 1, dims=1)
    loss = cls(ignore_index=255)
    assert loss(good, target) < loss(bad, target)
    noisy = good.clone()
    noisy[:, :, :2] = torch.randn_like(noisy[:, :, :2]) * 100  # ignored pixels must not matter
    assert loss(noisy, target) == pytest.approx(loss(good, target).item(), abs=1e-5)


@pytest.mark.parametrize("cls", [DiceLoss, FocalLoss, LovaszSoftmaxLoss])
def test_finite_under_low_precision_autocast(cls):
    logits = (torch.randn(2, 4, 16, 16) * 40).requires_grad_()
    target = torch.randint(0, 4, (2, 16, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = cls()(logits.bfloat16(), target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_binary_single_channel():
    target = torch.randint(0, 2, (2, 8, 8))
    logits = (target.float() * 2 - 1).unsqueeze(1) * 5
    for cls in LOSS_CLASSES:
        assert cls()(logits, target) < cls()(-logits, target)


def test_build_loss():
    combined = build_loss("0.5*ce+dice", ignore_index=3, class_weights=[1.0, 2.0])
    assert combined.weights == [0.5, 1.0]
    assert combined.terms[0].weight.tolist() == [1.0, 2.0] and combined.terms[0].ignore_index == 3
    assert isinstance(build_loss("lovasz"), LovaszSoftmaxLoss)
    with pytest.raises(ValueError, match="'dicey'"):
        build_loss("ce+dicey")
