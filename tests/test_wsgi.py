"""The WSGI entry point gunicorn serves: the app, built once and frozen for the garbage collector."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_served_app_is_built_and_frozen_before_workers_fork(worker_env: dict[str, str]) -> None:
    """Objects frozen before the fork are never walked by a worker's collector (nor copied by the kernel)."""
    probe = (
        "import gc, wsgi\n"
        "assert wsgi.app.name == 'catalog_service.app'\n"
        "print(gc.get_freeze_count())\n"
    )
    output = subprocess.run([sys.executable, "-c", probe], env=worker_env, cwd=ROOT, check=True,
                            capture_output=True, text=True, timeout=120).stdout
    assert int(output.strip().splitlines()[-1]) > 10_000
