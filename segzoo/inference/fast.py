"""The inference fast path: ``segzoo.optimize(model)`` and ``model.predict(...)``.

``optimize`` returns a module whose forward gives the same logits as the model's,
faster: a deep copy in eval mode with BatchNorm folded into the preceding
convolutions, channels_last memory format, inference mode, bf16 autocast on
GPU, cudnn.benchmark, on CPU dilated depthwise convolutions as tap sums where
they measure faster (dilated_depthwise.py), and optionally torch.compile.

Tolerances (logits vs the eager fp32 model, documented and tested):

* fp32 (CPU default): BN folding only reorders float arithmetic: max abs diff <= 1e-3,
  argmax identical except on near-ties.
* bf16 (GPU default): bf16 has 8 bits of mantissa: logits within about 5e-2 relative,
  argmax identical on all but a tiny fraction of pixels (near-ties).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from segzoo.core.device import native_bf16
from segzoo.core.errors import InvalidTypeError, InvalidValueError
from segzoo.core.outputs import class_ids
from segzoo.inference.dilated_depthwise import use_tap_sums

__all__ = ["optimize", "fold_batchnorm", "OptimizedModel"]


def _conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv, bn) module names where the BatchNorm's input is exactly that convolution's output,
    and nothing else consumes that output: found by watching one forward pass."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    consumers: dict[int, list[nn.Module]] = {}
    alive: list[torch.Tensor] = []  # every tensor seen stays alive during the trace, so ids are never reused
    hooks = []

    def record_output(module, args, output):
        if isinstance(output, torch.Tensor):
            produced[id(output)] = (module, output)  # keep the tensor alive: ids must not be reused

    def record_input(module, args):
        for a in args:
            if isinstance(a, torch.Tensor):
                alive.append(a)
                consumers.setdefault(id(a), []).append(module)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(record_output))
        if not list(module.children()):  # leaves: every consumer that is a module
            hooks.append(module.register_forward_pre_hook(record_input))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    for key, (conv, _) in produced.items():
        users = consumers.get(key, [])
        if len(users) == 1 and isinstance(users[0], nn.BatchNorm2d):
            bn = users[0]
            if bn.track_running_stats and bn.running_mean is not None and conv.out_channels == bn.num_features:
                pairs.append((names[conv], names[bn]))
    return pairs


@torch.no_grad()
def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold eval-mode BatchNorm into the convolution before it (in place); returns how many were folded."""
    model.eval()
    modules = dict(model.named_modules())
    pairs = _conv_bn_pairs(model, example)
    for conv_name, bn_name in pairs:
        conv, bn = modules[conv_name], modules[bn_name]
        inv_std = 1 / torch.sqrt(bn.running_var + bn.eps)
        scale = bn.weight * inv_std if bn.affine else inv_std
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter(shift + (bias - bn.running_mean) * scale)
        parent_name, _, child = bn_name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, nn.Identity())
    return len(pairs)


@torch.no_grad()
def _same_outputs(model: nn.Module, folded: nn.Module, example: torch.Tensor) -> bool:
    was_training = model.training
    model.eval()
    try:
        a, b = model(example), folded(example)
    finally:
        model.train(was_training)
    return bool((a - b).abs().max() <= 1e-3 * max(1.0, a.abs().max().item()))


class OptimizedModel(nn.Module):
    """Inference wrapper: inference mode, autocast (``dtype``), channels_last input; returns the logits."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.channels_last = channels_last
        self.num_classes = getattr(model, "num_classes", None)
        self.folded_batchnorms = 0
        self.tap_sum_convs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.model(x)
            return logits.float()


def _use_inference_forms(model: nn.Module) -> None:
    """Replace each module that offers an equivalent eval-only form (``inference_form()``, e.g. a head whose
    linear layers fold together) by that form, in place."""
    for name, module in list(model.named_modules()):
        form = getattr(module, "inference_form", None)
        if name and callable(form):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, form())


def optimize(
    model: nn.Module,
    *,
    compile: bool = False,
    dtype: torch.dtype | None | str = "auto",
    channels_last: bool = True,
    example: torch.Tensor | None = None,
) -> nn.Module:
    """A faster inference copy of ``model`` whose forward returns the same logits (see module docstring).

    ``dtype`` ``"auto"``: bf16 autocast on CUDA, fp32 elsewhere; None: fp32. ``example``:
    an input like the real ones (default: a 2 x C x 64 x 64 batch on the model's device),
    used once to find the convolution / BatchNorm pairs.
    """
    device = next(model.parameters()).device
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else None
    if dtype == torch.bfloat16 and device.type == "cpu" and not native_bf16(device):
        warnings.warn("optimize(dtype=torch.bfloat16) on a CPU without AVX512-BF16 or AMX: PyTorch emulates bf16 "
                      "here, measured 9.6-19x slower than fp32 for the zoo's weights on AVX2 (docs/deploy.md); "
                      "dtype=None or 'auto' runs fp32", RuntimeWarning, stacklevel=2)
    fast = copy.deepcopy(model).eval()
    _use_inference_forms(fast)
    in_ch = getattr(model, "in_channels", 3)
    if example is None:
        example = torch.randn(2, in_ch, 64, 64, device=device)
    folded = fold_batchnorm(fast, example)
    if folded and not _same_outputs(model, fast, example):
        warnings.warn("BatchNorm folding changed this model's outputs (a convolution's raw output is reused "
                      "outside its BatchNorm?): optimising without it", RuntimeWarning, stacklevel=2)
        fast, folded = copy.deepcopy(model).eval(), 0
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    tap_sums = use_tap_sums(fast, channels_last) if device.type == "cpu" and dtype is None else 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    wrapper = OptimizedModel(fast, dtype, channels_last)
    wrapper.folded_batchnorms, wrapper.tap_sum_convs = folded, tap_sums
    if compile:
        # on CPU, Inductor's freezing (constant weights: prepacked oneDNN layouts, conv + activation fusion)
        # is where its inference speed comes from; the weights are frozen here anyway
        options = {"freezing": True} if device.type == "cpu" else None
        # static shapes: a new input size compiles again (fixed tiles never do) instead of tracing symbolic
        # sizes, which for Swin-UNet's windows ran for over ten minutes in torch 2.15's shape solver
        wrapper.model = torch.compile(wrapper.model, options=options, dynamic=False)
    return wrapper


def normalised_limit(preprocessing: Any) -> float:
    """The largest magnitude an image normalised with ``preprocessing`` can reach (ImageNet's: 2.64), with room
    for a resize's overshoot: float inputs beyond it are raw pixels, not normalised ones."""
    low, high = preprocessing.input_range
    bound = max(max(abs(low - m), abs(high - m)) / s for m, s in zip(preprocessing.mean, preprocessing.std))
    return 1.25 * bound + 0.5


def predict_classes(fast: Callable[[torch.Tensor], torch.Tensor], images: Any, preprocessing: Any, *,
                    output_size: tuple[int, int] | None = None, **tiling: Any) -> torch.Tensor:
    """The one prediction path behind ``model.predict``, ``QuantizedModel.predict``, exported programs and
    ``segzoo predict``: class ids of uint8 images (normalised with ``preprocessing``) or of normalised floats.

    ``images``: ``(N, C, H, W)`` / ``(C, H, W)`` tensors or ``(N, H, W, C)`` / ``(H, W, C)`` arrays; one image gives
    ``(H, W)``, a batch ``(N, H, W)``. ``output_size`` (H, W): probabilities are resized to it before the argmax (an
    eval transform that resized the input). ``tiling``: ``tile``, ``overlap``, ``tta``, ``scales``, ``batch``,
    ``window`` of :func:`segzoo.inference.tiling.predict_probs`."""
    import numpy as np

    from segzoo.data.normalize import normalize
    from segzoo.inference.tiling import check_options

    check_options(tiling.get("tile"), tiling.get("overlap", 0.25), tiling.get("tta", ()),
                  tiling.get("scales", (1.0,)), tiling.get("batch", 4))
    tiling = {**tiling, **{k: tuple(tiling[k]) for k in ("tta", "scales") if k in tiling}}
    if isinstance(images, np.ndarray):
        if images.ndim == 2:  # one single-channel image (H, W)
            images = images[..., None]
        single = images.ndim == 3
        if single:  # one H x W x C image
            images = images[None]
        if images.ndim != 4:
            raise InvalidTypeError(f"predict expects arrays of shape (H, W), (H, W, C) or (N, H, W, C), got "
                                   f"{images.shape}")
        images = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    elif isinstance(images, torch.Tensor):
        single = images.ndim == 3
        if single:
            images = images.unsqueeze(0)
    else:
        raise InvalidTypeError(f"predict expects a tensor or a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise InvalidTypeError(f"predict expects images of shape (N, C, H, W), (C, H, W), (N, H, W, C) or "
                               f"(H, W, C), got {tuple(images.shape)}")
    if images.shape[-1] == 0 or images.shape[-2] == 0 or images.shape[0] == 0:
        raise InvalidValueError(f"predict got no pixels: images of shape {tuple(images.shape)}")
    # a module runs where its weights are; any other callable (an onnxruntime session) takes CPU tensors
    parameter = next(fast.parameters(), None) if isinstance(fast, nn.Module) else None
    device = parameter.device if parameter is not None else torch.device("cpu")
    if device.type == "meta":
        raise InvalidValueError("the model's weights are on the meta device (built without values): load weights "
                                "into it before predicting (model.to_empty(device='cpu') then load_state_dict)")
    images = images.to(device)
    # anything but one forward pass: a resize, tiles, windows (unless the image is the window's size), views
    window = tiling.get("window")
    views = (output_size is not None and tuple(output_size) != tuple(images.shape[-2:])) or any(
        tiling.get(k) for k in ("tile", "tta")) or tuple(tiling.get("scales", (1.0,))) != (1.0,) or (
        window is not None and tuple(window) != tuple(images.shape[-2:]))
    direct = getattr(fast, "class_ids_of_images", None)  # a runtime that takes uint8 images to class ids itself
    if images.dtype == torch.uint8 and direct is not None and not views:
        ids = direct(images)
        return ids[0] if single else ids
    if images.dtype == torch.uint8:
        images = normalize(images, preprocessing)
    elif not images.is_floating_point():
        raise InvalidTypeError(f"predict takes uint8 images (normalised here) or float images already "
                               f"normalised, got {images.dtype}")
    elif preprocessing is not None and float(images.detach().abs().amax()) > normalised_limit(preprocessing):
        raise InvalidValueError(
            f"float images are taken as already normalised with the model's preprocessing, which keeps them within "
            f"+-{normalised_limit(preprocessing):.3g}; these reach {float(images.detach().abs().amax()):.4g}, "
            "like raw 0-255 pixels: pass uint8 images (.astype(np.uint8) / .to(torch.uint8)) and predict "
            "normalises them")
    resize = output_size is not None and tuple(output_size) != tuple(images.shape[-2:])
    if views:
        from segzoo.inference.tiling import predict_probs

        probs = predict_probs(fast, images, **tiling)
        del images  # the normalised copy (12 bytes a pixel) is not needed beside the probabilities
        if resize:
            probs = torch.nn.functional.interpolate(probs, size=tuple(output_size), mode="bilinear",
                                                    align_corners=False)
        ids = class_ids(probs, probabilities=True)
    else:
        ids = class_ids(fast(images))
    return ids[0] if single else ids
