"""Importing avcl has no side effects on the caller: matplotlib's backend and the warnings filters stay."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = r"""
import warnings
# third parties first
import matplotlib, numpy, sklearn.linear_model, sklearn.manifold, torch, torch.distributed.nn.functional
backend = matplotlib.rcParams._get_backend_or_none()
filters = list(warnings.filters)
import avcl, avcl.cli, avcl.distributed, avcl.methods, avcl.evaluation.plots, avcl.evaluation.probe
import avcl.evaluation.metrics, avcl.evaluation.video_test, avcl.engine.run, avcl.engine.finetune, avcl.api
import avcl.evaluation.features, avcl.cli.features, avcl.experiments, avcl.demo
assert matplotlib.rcParams._get_backend_or_none() == backend, (backend, matplotlib.rcParams._get_backend_or_none())
assert list(warnings.filters) == filters, [f for f in warnings.filters if f not in filters]
from avcl.evaluation.plots import plot_bars
import tempfile, os
plot_bars(["a", "b"], [1.0, 2.0], None, os.path.join(tempfile.mkdtemp(), "bars.png"))
assert matplotlib.rcParams._get_backend_or_none() == backend
print("ok")
"""


def test_importing_avcl_changes_neither_the_backend_nor_the_warning_filters():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_data_flows_one_way_the_engine_never_imports_evaluation():
    import re
    from pathlib import Path

    import avcl

    root = Path(avcl.__file__).parent
    for layer, forbidden in (
        ("engine", ("avcl.evaluation", "avcl.experiments", "avcl.demo", "avcl.cli")),
        ("data", ("avcl.engine", "avcl.evaluation", "avcl.methods", "avcl.experiments")),
        ("methods", ("avcl.engine", "avcl.evaluation", "avcl.experiments")),
    ):
        for path in (root / layer).rglob("*.py"):
            imports = re.findall(r"^\s*(?:from|import)\s+(avcl[\w.]*)", path.read_text(), re.M)
            assert not [m for m in imports if m.startswith(forbidden)], (path, imports)


def test_the_config_the_registry_and_the_command_line_parser_import_no_torch():
    """The method section is composed on the first ``Config()``, not at import: ``avcl --help`` stays quick."""
    script = (
        "import sys, avcl.config, avcl.methods, avcl.experiments, avcl.cli\n"
        "avcl.cli.build_parser()\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]\n"
        "avcl.config.Config()\n"
        "assert 'torch' in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
