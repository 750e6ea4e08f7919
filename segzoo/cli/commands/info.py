"""``segzoo info``: parameters, FLOPs, config and source of a named model."""

from __future__ import annotations

import argparse
import json

from segzoo.core.errors import InvalidValueError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="parameters, FLOPs, config and source of a named model")
    p.add_argument("name")
    p.add_argument("--size", type=int, default=512, help="square input size for the FLOP count (default 512)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def count_flops(model, height: int = 512, width: int = 512) -> int:
    """FLOPs of one forward pass of a segzoo model on a 1 x C x height x width input."""
    import torch

    from segzoo.core.timing import count_flops as flops_on

    return flops_on(model, torch.randn(1, model.in_channels, height, width))


def run(args: argparse.Namespace) -> int:
    import segzoo

    if args.size < 16:
        raise InvalidValueError(f"--size must be at least 16 pixels, got {args.size}")
    info = segzoo.model_info(args.name)
    model = segzoo.create(args.name)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    info[f"gflops_{args.size}x{args.size}"] = round(count_flops(model, args.size, args.size) / 1e9, 2)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    config = info.pop("config")
    for key, value in info.items():
        print(f"{key:20} {value}")
    print("config:")
    print(json.dumps(config, indent=2))
    return 0
