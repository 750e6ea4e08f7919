"""``segzoo list``: list named models (or encoders, decoders, plugins)."""

from __future__ import annotations

import argparse
import fnmatch


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list named models (or encoders, decoders, plugins)")
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'unet_*'")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--encoders", action="store_true", help="list encoders (segzoo's and every timm model)")
    group.add_argument("--decoders", action="store_true", help="list decoders")
    group.add_argument("--plugins", action="store_true", help="show installed plugins and whether they load")
    group.add_argument("--weights", action="store_true",
                       help="the model zoo: published weights with their metrics (the README's table)")
    p.set_defaults(func=run)


DECLARED_HEADING = ("Published elsewhere (downloaded once on first use, checked, converted, cached; each under its "
                    "own licence):")


def run(args: argparse.Namespace) -> int:
    # the registry alone: listing named models imports neither torch nor timm
    from segzoo.core.registry import DECODERS, ENCODERS, MODELS, plugin_status

    if args.plugins:
        rows = plugin_status(probe=True)
        if not rows:
            print("no plugins installed (entry-point groups segzoo.encoders, segzoo.decoders, segzoo.models)")
        for r in rows:
            line = f"{r.kind:8} {r.name:24} {r.distribution:28} {r.state}"
            print(line + (f"  -- {r.error}" if r.error else ""))
        return 1 if any(r.state in ("failed", "conflict", "malformed") for r in rows) else 0
    if args.weights:
        from segzoo.storage.manifest import read_manifest, zoo_table
        from segzoo.storage.specs import declared_table

        rows = [e for e in read_manifest() if fnmatch.fnmatch(f"{e['model']}.{e['tag']}", args.pattern)]
        print(zoo_table(rows))
        print(f"\n{DECLARED_HEADING}\n\n{declared_table(args.pattern)}")
        return 0
    registry = ENCODERS if args.encoders else DECODERS if args.decoders else MODELS
    names = registry.names(args.pattern)
    print("\n".join(names))
    return 0
