"""Methods, one file each, and the registry that maps a config name to its class."""

from __future__ import annotations

from avcl.config import Config
from avcl.errors import UserError
from avcl.methods.avcl import AVCL
from avcl.methods.barlow import BarlowTwins
from avcl.methods.base import Method
from avcl.methods.byol import BYOL
from avcl.methods.iic import IIC
from avcl.methods.moco import MoCo
from avcl.methods.simclr import SimCLR
from avcl.methods.simsiam import SimSiam
from avcl.methods.supervised import Supervised
from avcl.methods.tcgl import TCGL

METHODS: dict[str, type[Method]] = {
    "avcl": AVCL,
    "supervised": Supervised,
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "simsiam": SimSiam,
    "barlow": BarlowTwins,
    "iic": IIC,
    "tcgl": TCGL,
}


def build_method(cfg: Config, num_classes: int | None = None) -> Method:
    name = cfg.method.name
    if name not in METHODS:
        raise UserError(f"unknown method '{name}'; available: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg, num_classes=num_classes)


__all__ = ["METHODS", "Method", "build_method"]
