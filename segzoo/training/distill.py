"""Knowledge distillation: a frozen teacher's logits on the same augmented batch add a term to the student's loss.

Two losses, both with the ignore index respected and the teacher's logits resized to the student's when their
sizes differ (segzoo models return logits at the input size, so they agree unless a custom teacher does not):

* ``kl``: pixel-wise KL divergence between the temperature-softened class distributions of teacher and student
  (Hinton et al. 2015 applied per pixel, as in SKD / CIRKD's baseline), averaged over labelled pixels, times T².
* ``cwd``: channel-wise distillation (Shu et al., ICCV 2021): each class channel's logits are turned into a
  distribution over the image's labelled pixels (a softmax over space at temperature T), and the KL divergence
  between teacher and student distributions is averaged over images and channels, times T².

The teacher (a zoo name, a weights file or folder) is loaded once, frozen in eval mode, and run under
``torch.inference_mode`` (optionally in bf16 autocast, cheaper on CPUs with AVX512-BF16 / AMX), with its own
preprocessing: teacher and student may normalise differently. Class lists must match, checked before any work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from segzoo.core.config import label_count
from segzoo.core.errors import InvalidValueError

__all__ = ["PixelKLDistillation", "ChannelWiseDistillation", "build_distill_loss", "Teacher", "DISTILL_LOSSES",
           "DEFAULT_TEMPERATURE"]

DEFAULT_TEMPERATURE = {"kl": 1.0, "cwd": 4.0}  # the papers' settings


def _match(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Teacher logits at the student's spatial size (bilinear), in fp32."""
    teacher = teacher.float()
    if teacher.shape[-2:] != student.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False)
    return teacher


class PixelKLDistillation(nn.Module):
    """``T² · mean over labelled pixels of KL(softmax(t / T) || softmax(s / T))`` (class distributions per pixel)."""

    def __init__(self, temperature: float = 1.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.temperature, self.ignore_index = float(temperature), ignore_index

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        teacher = _match(teacher, student)
        log_p_s = F.log_softmax(student.float() / t, dim=1)
        log_p_t = F.log_softmax(teacher / t, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (N, H, W)
        valid = (target != self.ignore_index).to(kl.dtype)
        return (kl * valid).sum() / valid.sum().clamp_min(1.0) * t * t


class ChannelWiseDistillation(nn.Module):
    """``T² · mean over (image, channel) of KL(softmax_space(t_c / T) || softmax_space(s_c / T))``, the softmax
    taken over the image's labelled pixels only."""

    def __init__(self, temperature: float = 4.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.temperature, self.ignore_index = float(temperature), ignore_index

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        teacher = _match(teacher, student)
        n, c = student.shape[:2]
        valid = (target != self.ignore_index).reshape(n, 1, -1)  # (N, 1, HW)
        # ignored pixels get a logit so low that their probability is 0 (finite, unlike -inf: an image with no
        # labelled pixel would give NaN gradients), and their terms are dropped
        s = (student.float() / t).reshape(n, c, -1).masked_fill(~valid, -1e9)
        u = (teacher / t).reshape(n, c, -1).masked_fill(~valid, -1e9)
        log_p_s, log_p_t = F.log_softmax(s, dim=-1), F.log_softmax(u, dim=-1)
        p_t = log_p_t.exp()
        kl = torch.where(valid, p_t * (log_p_t - log_p_s), torch.zeros_like(p_t)).sum(dim=-1)  # (N, C)
        images = valid.any(dim=-1).squeeze(1)  # images with no labelled pixel contribute nothing
        if not bool(images.any()):
            return student.sum() * 0.0
        return kl[images].mean() * t * t


DISTILL_LOSSES = {"kl": PixelKLDistillation, "cwd": ChannelWiseDistillation}


def build_distill_loss(name: str, temperature: float | None, ignore_index: int) -> nn.Module:
    if name not in DISTILL_LOSSES:
        raise InvalidValueError(f"distill.loss must be one of {sorted(DISTILL_LOSSES)}, got {name!r}")
    return DISTILL_LOSSES[name](DEFAULT_TEMPERATURE[name] if temperature is None else temperature, ignore_index)


class Teacher:
    """A frozen model whose logits a student learns from: eval mode, no gradients, its own preprocessing,
    ``inference_mode`` and optional bf16 autocast. Not an ``nn.Module`` attribute of the trainer's model, so it is
    never saved, wrapped by DDP or updated by the optimiser or EMA."""

    def __init__(self, model: nn.Module, source: str, sha256: str, dtype: torch.dtype | None = None,
                 channels_last: bool = False) -> None:
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.source, self.sha256, self.dtype, self.channels_last = source, sha256, dtype, channels_last

    @classmethod
    def load(cls, source: str, classes: list[str], device: torch.device, dtype: torch.dtype | None = None,
             channels_last: bool = False) -> Teacher:
        """Load ``source`` (a zoo name, file or folder) and check that it predicts exactly ``classes``."""
        from segzoo.api import from_pretrained

        model = from_pretrained(source)
        names = model.meta.class_names
        if label_count(model.num_classes) != len(classes) or (names is not None and list(names) != list(classes)):
            theirs = f"{label_count(model.num_classes)} classes" + (f" {list(names)}" if names is not None else "")
            raise InvalidValueError(f"teacher {source!r} predicts {theirs}, but the recipe's data has "
                                    f"{len(classes)} classes {list(classes)}: a teacher must predict the student's "
                                    "classes, in the same order")
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cls(model, source, model.loaded_from["sha256"], dtype, channels_last)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of uint8 images (N, C, H, W), normalised with the teacher's own preprocessing; a plain tensor
        (usable by the student's loss), fp32."""
        from segzoo.data.normalize import normalize

        with torch.inference_mode():
            x = normalize(images, self.model.meta.preprocessing)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                logits = self.model(x)
            logits = logits.float()
        return logits.clone()  # an inference-mode tensor cannot be saved for the student's backward

    def provenance(self) -> dict[str, str]:
        return {"source": self.source, "sha256": self.sha256}
