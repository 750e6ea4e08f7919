"""Segmentation losses: cross-entropy, Dice, Focal, Lovasz-softmax, and weighted sums such as ``"ce+dice"``.

All take logits ``(N, C, H, W)`` and targets ``(N, H, W)`` with an ignore index.
Dice, Focal and Lovasz compute in fp32 whatever the autocast dtype, so that they
stay finite under AMP (fp16 softmax sums underflow: a known source of NaN Dice).
A single-channel output (``C == 1``) is treated as binary (sigmoid).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.errors import InvalidValueError
from segzoo.core.registry import LOSSES, register_loss

__all__ = ["CrossEntropyLoss", "DiceLoss", "FocalLoss", "LovaszSoftmaxLoss", "CombinedLoss", "build_loss", "LOSSES"]


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """fp32 probabilities, one-hot targets and a valid-pixel mask, binary or multiclass."""
    logits = logits.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        probs = torch.cat([1 - p, p], dim=1)
        onehot = F.one_hot(safe.clamp(0, 1), 2)
    else:
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(safe, logits.shape[1])
    onehot = onehot.permute(0, 3, 1, 2).to(probs.dtype)
    mask = valid.unsqueeze(1).to(probs.dtype)
    return probs * mask, onehot * mask, valid


@register_loss("ce")
class CrossEntropyLoss(nn.Module):
    """Cross-entropy with ignore index and class weights (binary cross-entropy for one channel)."""

    def __init__(self, ignore_index: int = 255, class_weights: Sequence[float] | None = None,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", torch.tensor(class_weights, dtype=torch.float) if class_weights else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            valid = target != self.ignore_index
            loss = F.binary_cross_entropy_with_logits(logits[:, 0].float(), target.float().clamp(0, 1),
                                                      reduction="none")
            return (loss * valid).sum() / valid.sum().clamp_min(1)
        weight = self.weight.to(logits.dtype) if self.weight is not None else None
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index,
                               label_smoothing=self.label_smoothing)


@register_loss("dice")
class DiceLoss(nn.Module):
    """1 - soft Dice, averaged over the classes present in the batch (ignore-aware, fp32)."""

    def __init__(self, ignore_index: int = 255, smooth: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, _ = _probs_and_onehot(logits, target, self.ignore_index)
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        card = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (card + self.smooth)
        present = onehot.sum(dims) > 0
        if logits.shape[1] == 1:  # binary: the foreground channel
            return 1 - dice[1]
        return 1 - (dice[present].mean() if present.any() else dice.mean())


@register_loss("focal")
class FocalLoss(nn.Module):
    """Focal loss (Lin et al., 2017): cross-entropy scaled by ``(1 - p_t) ** gamma`` (fp32)."""

    def __init__(self, ignore_index: int = 255, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, valid = _probs_and_onehot(logits, target, self.ignore_index)
        pt = (probs * onehot).sum(1).clamp_min(1e-8)
        loss = -((1 - pt) ** self.gamma) * pt.log()
        if self.alpha is not None:
            loss = loss * self.alpha
        return (loss * valid).sum() / valid.sum().clamp_min(1)


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (Berman et al., 2018)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


@register_loss("lovasz")
class LovaszSoftmaxLoss(nn.Module):
    """Lovasz-softmax (Berman et al., 2018): a convex surrogate of 1 - IoU, over the classes present (fp32)."""

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs, onehot, valid = _probs_and_onehot(logits, target, self.ignore_index)
        c = probs.shape[1]
        probs = probs.permute(0, 2, 3, 1).reshape(-1, c)[valid.reshape(-1)]
        onehot = onehot.permute(0, 2, 3, 1).reshape(-1, c)[valid.reshape(-1)]
        losses = []
        for k in range(c):
            fg = onehot[:, k]
            if fg.sum() == 0:
                continue
            errors = (fg - probs[:, k]).abs()
            errors_sorted, perm = torch.sort(errors, descending=True)
            losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
        if not losses:
            return probs.sum() * 0.0
        return torch.stack(losses).mean()


class CombinedLoss(nn.Module):
    """A weighted sum of losses."""

    def __init__(self, terms: Sequence[tuple[float, nn.Module]]) -> None:
        super().__init__()
        self.weights = [float(w) for w, _ in terms]
        self.terms = nn.ModuleList(m for _, m in terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * term(logits, target) for w, term in zip(self.weights, self.terms))


def build_loss(spec: str, ignore_index: int = 255, class_weights: Sequence[float] | None = None) -> nn.Module:
    """``"ce"``, ``"ce+dice"``, ``"0.5*ce+1.5*lovasz"``... of registered losses (``LOSSES``; plugins add theirs).
    ``class_weights`` go to every term whose class takes them; weights no term takes are an error, not ignored."""
    terms = []
    weighted = False
    for part in spec.replace(" ", "").split("+"):
        match = re.fullmatch(r"(?:([0-9.]+)\*)?([a-z_]+)", part)
        if not match or match.group(2) not in LOSSES.own_names():
            raise InvalidValueError(
                f"unknown loss term {part!r} in {spec!r}; terms: {LOSSES.own_names()}, e.g. '0.5*ce+dice'"
            )
        weight, name = float(match.group(1) or 1.0), match.group(2)
        cls = LOSSES.get(name)
        kwargs: dict = {"ignore_index": ignore_index}
        if "class_weights" in inspect.signature(cls).parameters:
            kwargs["class_weights"] = class_weights
            weighted = True
        terms.append((weight, cls(**kwargs)))
    if class_weights is not None and not weighted:
        raise InvalidValueError(f"train.class_weights would be ignored: no term of the loss {spec!r} takes class "
                                "weights (ce does)")
    return terms[0][1] if len(terms) == 1 and terms[0][0] == 1.0 else CombinedLoss(terms)
