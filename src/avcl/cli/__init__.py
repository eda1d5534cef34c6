"""The ``avcl`` command. Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from avcl import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avcl",
        description="Self-supervised audio-visual representation learning from video (AVCL and baselines).",
    )
    parser.add_argument("--version", action="version", version=f"avcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options even after another positional (`avcl ablate table1 --data D
    # train.epochs=5`), which argparse alone does not collect: gather the leftovers here.
    args, rest = parser.parse_known_args(argv)
    strays = [r for r in rest if r.startswith("-") or "=" not in r]
    if strays or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(strays or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # user-facing errors print one clear line, not a traceback
        from avcl.errors import UserError

        if isinstance(exc, UserError):
            print(f"avcl {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
