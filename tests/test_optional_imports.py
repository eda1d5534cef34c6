"""avcl imports and runs where PyAV, librosa and simplejpeg are not installed (the GPU machines' image)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"av", "librosa", "simplejpeg"}:
            raise ImportError(f"{name} is not installed here")
        return None
sys.meta_path.insert(0, Blocker())
"""


def run_blocked(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, env=env, timeout=300)


def test_package_and_bench_train_help_without_pyav_librosa_simplejpeg():
    result = run_blocked(
        "import avcl, avcl.methods, avcl.engine, avcl.engine.trainer, avcl.engine.setup, avcl.data.datasets\n"
        "import avcl.bench.train, avcl.bench.loader\n"
        "assert not {'av', 'librosa', 'simplejpeg'} & set(sys.modules)\n"
        "from avcl.cli import main\n"
        "sys.exit(main(['bench', 'train', '--data', 'synthetic', '--help']))\n"
    )
    assert result.returncode == 0, result.stderr
    assert "--data" in result.stdout and "synthetic" in result.stdout


def test_cache_frames_decode_without_simplejpeg(tmp_path):
    """Without simplejpeg the reader decodes with torchvision: the same pixels."""
    from avcl.data.cache import decode_frame, encode_frame

    rng = np.random.default_rng(0)
    frame = np.clip(rng.normal(128, 40, size=(48, 64, 3)), 0, 255).astype(np.uint8)
    data = encode_frame(frame, 80)
    (tmp_path / "frame.jpg").write_bytes(data)
    np.save(tmp_path / "want.npy", decode_frame(data))
    result = run_blocked(
        "import numpy as np\n"
        "from avcl.data.cache import decode_frame\n"
        f"data = open({str(tmp_path / 'frame.jpg')!r}, 'rb').read()\n"
        "out = np.empty((48, 64, 3), np.uint8)\n"
        "decode_frame(memoryview(data), out)\n"
        f"assert np.array_equal(out, np.load({str(tmp_path / 'want.npy')!r}))\n"
        "assert 'simplejpeg' not in sys.modules\n"
    )
    assert result.returncode == 0, result.stderr
