"""Where the presets that come with avcl live: ``configs/*.yaml`` of a source checkout.

Every default preset (the demo's, the training benchmark's, the paper-literal method settings) is found
through :func:`preset_path`, so moving the folder means changing one line.
"""

from __future__ import annotations

from pathlib import Path

from avcl.errors import UserError

PRESETS = Path(__file__).resolve().parents[2] / "configs"


def preset_path(name: str, *, required: bool = True, hint: str = "") -> Path:
    """The path of the preset ``name`` (``demo_cpu`` or ``demo_cpu.yaml``).

    ``required``: a missing file raises :class:`UserError` (the message ends with ``hint``, e.g. what to
    pass instead); otherwise the path is returned whether or not the file exists."""
    path = PRESETS / (name if name.endswith(".yaml") else f"{name}.yaml")
    if required and not path.is_file():
        raise UserError(f"{path} not found: the presets live in the configs/ folder of a source checkout{hint}")
    return path
