"""CPU latency of every published zoo weight at its dataset's image size, written back to the manifest, the model
cards and the README's model-zoo table.

``segzoo publish`` measures latency once, possibly while the machine is busy (a training run beside it); run this
on an idle machine to refresh the figures. One eager fp32 forward pass, batch 1, median of ``--repeats`` after a
warm-up, with the process's default thread count.

    python -m benchmarks.zoo_latency --repeats 10
"""

from __future__ import annotations

import argparse
import re

import torch

import segzoo
from benchmarks._report import cpu_description, write_result
from segzoo.core.io import atomic_path
from segzoo.storage.manifest import read_manifest, update_manifest, update_readme_table
from segzoo.storage.specs import weights_dir
from segzoo.training.publish import cpu_latency_ms


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", default="benchmarks/results/zoo_latency.json")
    args = parser.parse_args(argv)
    rows = {}
    for entry in read_manifest():
        name = f"{entry['model']}.{entry['tag']}"
        height, width = entry["image_size"]
        ms = round(cpu_latency_ms(segzoo.from_pretrained(name), height, width, args.repeats), 1)
        rows[name] = {"image_size": [height, width], "cpu_latency_ms": ms, "was": entry.get("cpu_latency_ms")}
        print(f"{name:32} {height}x{width}: {ms:.1f} ms (was {entry.get('cpu_latency_ms')})", flush=True)
        update_manifest({**entry, "cpu_latency_ms": ms})
        card = weights_dir() / f"{name}.md"
        if card.is_file():
            text = re.sub(r"CPU latency: [0-9.]+ ms per", f"CPU latency: {ms:.0f} ms per", card.read_text())
            with atomic_path(card) as tmp:
                tmp.write_text(text)
    update_readme_table()
    result = {"benchmark": "zoo_latency", "cpu": cpu_description(), "threads": torch.get_num_threads(),
              "repeats": args.repeats, "weights": rows}
    return write_result(result, args.output, ["weights"])


if __name__ == "__main__":
    main()
