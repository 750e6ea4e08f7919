"""Writing a benchmark's result: the JSON file with the machine it ran on, and a short summary on stdout."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def write_result(result: dict[str, Any], output: str | Path, summary_keys: Sequence[str]) -> dict[str, Any]:
    result["machine"] = {"threads": torch.get_num_threads(), "platform": platform.platform(),
                         "torch": torch.__version__}
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in summary_keys}, indent=2))
    return result
