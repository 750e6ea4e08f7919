"""How long the ``segzoo`` command takes to answer, per subcommand: wall time of fresh processes (median of
several), and which heavy modules each one imported. The target: ``--help``, ``list`` and ``info`` under 2 s.

    python -m benchmarks.cli_startup            # writes benchmarks/results/cli_startup.json
    PYTHONPATH=../old-checkout python -m benchmarks.cli_startup --output /tmp/old.json   # another segzoo
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import cpu_description

COMMANDS = {
    "--help": ["--help"],
    "list": ["list"],
    "list --weights": ["list", "--weights"],
    "info unet_r18": ["info", "unet_r18"],
    "info unet_r18 --size 64": ["info", "unet_r18", "--size", "64"],
}
PROBE = """import sys
import segzoo.cli as c
try:
    c.main({args!r})
except SystemExit:  # --help
    pass
print('HEAVY', sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules), file=sys.stderr)
"""


def measure(args: list[str], repeats: int) -> dict:
    times, heavy = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if run.returncode != 0:
            raise SystemExit(f"segzoo {' '.join(args)} failed: {run.stderr[-2000:]}")
        heavy = run.stderr.strip().splitlines()[-1].removeprefix("HEAVY ")
    return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3), "runs": repeats,
            "imports": heavy}


def measure_python(repeats: int) -> float:
    """Seconds for a bare ``python -c pass``: what no import can save."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "cli_startup.json"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    baseline = measure_python(args.repeats)
    results = {name: measure(cmd, args.repeats) for name, cmd in COMMANDS.items()}
    import segzoo

    out = {"cpu": cpu_description(), "python": platform.python_version(), "python_startup_s": round(baseline, 3),
           "segzoo": str(Path(segzoo.__file__).parent), "commands": results}
    path = Path(args.output)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
