"""Throughput benchmarks (``avcl bench``): the loader, the cache formats and training speed per backbone.

This module imports no torch, so that the command line can read :data:`BACKBONES` for its help.
"""

from avcl.config import BACKBONES as _CONFIG_BACKBONES
from avcl.config import ModelConfig as _ModelConfig

# The backbones ``avcl bench train`` measures when none are named, in the order of its runs and table:
# the config's backbones, its default first.
BACKBONES = (_ModelConfig.backbone, *(b for b in _CONFIG_BACKBONES if b != _ModelConfig.backbone))
