"""Shared fixtures: paths to the read-only real data and weights, small helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The read-only real data and ImageNet weights beside the checkout, unless the environment names others
# (segzoo itself knows no machine paths: it reads these two variables).
for _var, _folder in (("SEGZOO_DATA", SHARED / "data"), ("SEGZOO_WEIGHTS", SHARED / "weights")):
    if _folder.is_dir():
        os.environ.setdefault(_var, str(_folder))


# A tiny U-Net on the plain encoder, as a recipe's `model` section: fast enough to train in tests
TINY_UNET = {"decoder": "unet", "encoder": "plain",
             "overrides": {"encoder_params": {"widths": [8, 16, 16]}, "decoder_channels": [8, 8],
                           "upsampling": "bilinear"}}


# swin_unet_t's overrides for a Swin-UNet small enough to build, run and export in seconds
TINY_SWIN_UNET = {"encoder_params": {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
                  "depths": (1, 1, 1), "head_dim": 8}


def shared_weights_dir() -> Path:
    return Path(os.environ.get("SEGZOO_WEIGHTS", SHARED / "weights"))


def shared_data_dir() -> Path:
    return Path(os.environ.get("SEGZOO_DATA", SHARED / "data"))


@pytest.fixture(scope="session")
def mobilenetv2_weights() -> Path:
    path = shared_weights_dir() / "mobilenetv2_100.coral_in1k.safetensors"
    if not path.is_file():
        pytest.skip(f"offline ImageNet weights not found at {path} (set SEGZOO_WEIGHTS)")
    return path


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Random BatchNorm statistics and affine parameters (eval mode), so that equivalences are not trivial."""
    g = torch.Generator().manual_seed(1)
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.copy_(torch.rand(bn.num_features, generator=g) - 0.5)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.weight.data.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
        bn.bias.data.copy_(torch.rand(bn.num_features, generator=g) - 0.5)
    return model.eval()
