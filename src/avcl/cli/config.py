"""``avcl config``: print the resolved configuration (defaults, preset, overrides) as YAML."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("config", help="print the resolved configuration (defaults < --config < key=value)")
    p.add_argument("--config", help="YAML preset")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args) -> int:
    import yaml

    from avcl.config import load_config

    print(yaml.safe_dump(load_config(args.config, args.overrides).to_dict(), sort_keys=False), end="")
    return 0
