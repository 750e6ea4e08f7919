"""Optimisers and learning-rate schedules."""

from __future__ import annotations

import math
from typing import Any

import torch

from segzoo.training.metrics import Monitor
from segzoo.training.recipe import TrainConfig

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; the encoder's parameters get ``lr * encoder_lr_mult``; no weight decay on norms and biases."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        is_encoder = name.startswith("encoder.")
        no_decay = param.ndim <= 1
        groups.setdefault((is_encoder, no_decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "lr": cfg.lr * (cfg.encoder_lr_mult if is_encoder else 1.0),
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "name": ("encoder" if is_encoder else "head") + ("/no_decay" if no_decay else ""),
        }
        for (is_encoder, no_decay), params in sorted(groups.items())
    ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(param_groups, lr=cfg.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> Any:
    """Stepped once per optimiser step; ``plateau`` (a ``ReduceLROnPlateau``) once per validation, with the
    monitored figure, in that figure's direction."""
    warmup = max(0, cfg.warmup_steps)
    total = max(1, total_steps)

    def with_warmup(fn):
        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return fn(min(1.0, (step - warmup) / max(1, total - warmup)))

        return factor

    if cfg.scheduler == "poly":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, with_warmup(lambda t: (1 - t) ** cfg.poly_power))
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, with_warmup(lambda t: 0.5 * (1 + math.cos(math.pi * t))))
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total
        )
    if cfg.scheduler == "plateau":
        mode = Monitor.of(cfg.monitor).mode
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
