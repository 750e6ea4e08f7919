"""Structured (channel) pruning with Torch-Pruning: a smaller model of the same architecture, whose config records
the pruned widths so that it rebuilds from its own file without any pruning code.

``segzoo.prune(model, flops=0.6)`` builds Torch-Pruning's dependency graph of the model (so that coupled channels
go together: U-Net skip concatenations, residual additions, ASPP branches, depthwise convolutions), ranks channel
groups by the L2 magnitude of their weights or by a first-order Taylor score on a few calibration images, and
removes the lowest-ranked until the model keeps at most ``flops`` of its FLOPs (measured at ``example_size``). The
class count is never pruned: the segmentation head, and the auxiliary and classification heads' outputs, are
left out. The pruned model is meant to be fine-tuned (``segzoo train RECIPE --init PRUNED``), optionally with the
unpruned model as teacher. Needs the ``compress`` extra (``torch-pruning``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from segzoo.core.config import ModelMeta
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.extras import install_hint
from segzoo.data.normalize import normalize
from segzoo.models.segmentation_model import SegmentationModel
from segzoo.models.widths import layer_widths

__all__ = ["prune", "CRITERIA", "SCOPES", "flops_of"]

CRITERIA = ("magnitude", "taylor")
SCOPES = ("model", "decoder")


def _tp():
    try:
        import torch_pruning
    except ImportError as exc:
        raise InvalidValueError(f"structured pruning needs torch-pruning: {install_hint('compress')}") from exc
    return torch_pruning


def flops_of(model: torch.nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass, as Torch-Pruning counts them."""
    ops, _ = _tp().utils.count_ops_and_params(model, example)
    return int(ops)


def _head_outputs(model: SegmentationModel) -> list[torch.nn.Module]:
    """The layers whose outputs are classes: never pruned (their inputs are, with the layers feeding them)."""
    heads: list[torch.nn.Module] = [model.head]
    if model.aux_head is not None:
        heads.append(model.aux_head[-1])  # its 1 x 1 classifier
    if model.classification_head is not None:
        heads.append(model.classification_head.fc)
    return heads


def _all_heads(model: SegmentationModel, x: torch.Tensor) -> list[torch.Tensor]:
    out = model.forward_heads(x)
    return [t for t in (out.logits, out.aux, out.cls) if t is not None]


def _taylor_gradients(model: SegmentationModel, images: list[torch.Tensor]) -> None:
    """Accumulate gradients of a label-free loss (cross-entropy against the model's own predictions) on the
    calibration images: what the first-order Taylor importance ranks channels by."""
    model.zero_grad()
    model.eval()  # batch norm as at inference: the statistics the pruned model keeps
    for x in images:
        logits = model(x)
        with torch.no_grad():
            target = logits.argmax(1) if logits.shape[1] > 1 else (logits[:, 0] > 0).float()
        loss = (F.cross_entropy(logits, target) if logits.shape[1] > 1
                else F.binary_cross_entropy_with_logits(logits[:, 0], target))
        loss.backward()


def _pruned_copy(model: SegmentationModel, ratio: float, criterion: str, example: torch.Tensor,
                 images: list[torch.Tensor], round_to: int, scope: str) -> SegmentationModel:
    tp = _tp()
    candidate = copy.deepcopy(model).eval()
    importance = (tp.importance.TaylorImportance() if criterion == "taylor"
                  else tp.importance.MagnitudeImportance(p=2))
    # scope "decoder": the encoder's channel groups get a ratio of 0, the decoder's (with the deepest encoder
    # feature's channels, which Torch-Pruning ranks with the decoder layers reading them) the searched one
    ratios = {"model": (ratio, {}), "decoder": (0.0, {candidate.decoder: ratio})}[scope]
    # traced through every head: an auxiliary head's input channels follow the encoder feature it reads
    pruner = tp.pruner.MetaPruner(candidate, example, importance=importance, pruning_ratio=ratios[0],
                                  pruning_ratio_dict=ratios[1],
                                  ignored_layers=_head_outputs(candidate), global_pruning=False,
                                  round_to=round_to if round_to > 1 else None,
                                  forward_fn=_all_heads)
    if criterion == "taylor":
        _taylor_gradients(candidate, images)
    pruner.step()
    candidate.zero_grad(set_to_none=True)
    return candidate


def prune(model: SegmentationModel, flops: float = 0.6, *, criterion: str = "magnitude",
          calibration: Iterable[Any] = (), example_size: tuple[int, int] = (256, 256),
          tolerance: float = 0.02, round_to: int = 8, scope: str = "model") -> SegmentationModel:
    """A channel-pruned copy of ``model`` keeping at most ``flops`` (a share in (0, 1)) of its FLOPs.

    ``criterion``: ``magnitude`` (L2 norm of each channel group's weights; needs no data) or ``taylor``
    (|weight x gradient| on ``calibration``: uint8 images, (C, H, W) tensors or (H, W, C) arrays, a few are
    enough). The share of channels removed per layer is searched (bisection) so that the FLOPs land within
    ``tolerance`` below the target. Channel counts stay multiples of ``round_to`` (8: what CPU vector units and
    INT8 kernels like; 1 for tiny models, where 8 is too coarse). ``scope``: ``model`` prunes every layer by the
    same share; ``decoder`` prunes the decoder, which the fine-tune retrains quickly, and keeps the pretrained
    encoder, whose features are slow to recover, except for the channels of its deepest feature: Torch-Pruning
    couples those to the decoder layers that read them (the last stage's output projection, with its residual
    branches). On DeepLabV3+ MobileNetV2 the decoder holds about half the FLOPs. The result's ``config.pruned``
    holds every changed width, its ``meta.parent`` the model it came from; ``build_model(result.config)`` makes the same
    architecture.
    """
    from segzoo.deploy.calibration import as_uint8_chw

    if not isinstance(model, SegmentationModel):
        raise InvalidTypeError(f"prune takes a segzoo SegmentationModel, got {type(model).__name__}")
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not 0 < flops < 1:
        raise InvalidValueError(f"flops is the share of FLOPs to keep, in (0, 1), e.g. 0.6; got {flops!r}")
    if criterion not in CRITERIA:
        raise InvalidValueError(f"pruning criterion must be one of {CRITERIA}, got {criterion!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise InvalidValueError(f"round_to is the channel multiple to keep, an integer >= 1; got {round_to!r}")
    if scope not in SCOPES:
        raise InvalidValueError(f"pruning scope must be one of {SCOPES}, got {scope!r}")
    if model.config.pruned:
        raise InvalidValueError("this model is already pruned; prune the unpruned model to the share you want")
    images = [normalize(as_uint8_chw(image, i).unsqueeze(0), model.meta.preprocessing)
              for i, image in enumerate(calibration)]
    if criterion == "taylor" and not images:
        raise InvalidValueError("the taylor criterion needs calibration images (a few training images)")
    if criterion != "taylor" and images:
        raise InvalidValueError(f"calibration images are read by the taylor criterion only; the {criterion} "
                                "criterion would ignore them: drop them, or choose criterion='taylor'")
    model = model.eval()
    device = next(model.parameters()).device
    example = torch.randn(1, model.in_channels, *example_size, device=device)
    images = [x.to(device) for x in images]
    base = flops_of(model, example)
    low, high, best = 0.0, 0.95, None
    for _ in range(8):  # bisection on the share of channels removed per layer
        ratio = (low + high) / 2
        candidate = _pruned_copy(model, ratio, criterion, example, images, round_to, scope)
        kept = flops_of(candidate, example) / base
        if kept <= flops:
            best, high = (candidate, kept), ratio
            if flops - kept <= tolerance:
                break
        else:
            low = ratio
    if best is None:
        raise InvalidValueError(f"could not prune {model.config.decoder}/{model.config.encoder.name} to {flops:.0%} "
                                f"of its FLOPs with scope {scope!r} (too few prunable channels)")
    pruned, kept = best
    design = dataclasses.replace(model.config, encoder=dataclasses.replace(model.config.encoder, weights=None))
    with torch.device("meta"):  # the widths as designed, to compare with (nothing allocated)
        reference = SegmentationModel(design)
    config = dataclasses.replace(model.config, pruned=layer_widths(pruned, reference))
    meta = ModelMeta.from_dict(model.meta.to_dict())
    if model.loaded_from:  # the pruned file's parent is the file pruned; what that one came from moves to ancestry
        meta.ancestry = model.meta.descendants_ancestry(model.loaded_from)
        meta.parent, meta.teacher = dict(model.loaded_from), None
    meta.pruning = {"kept_flops": round(kept, 4), "target_flops": float(flops), "criterion": criterion,
                    "scope": scope, "round_to": round_to, "example_size": list(example_size),
                    "layers": len(config.pruned), "parent": meta.parent}
    rebuilt = SegmentationModel(config, meta)  # the recorded widths alone: what loading the file will build
    rebuilt.load_state_dict(pruned.state_dict(), strict=True)
    rebuilt.loaded_from = model.loaded_from
    return rebuilt.eval()
