"""A worker gives memory back after each job, and one that still holds too much starts afresh as a new process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Worker as RQWorker

from catalog_service.models import Render, RenderStatus
from jobs.worker import give_memory_back, resident_mb, should_recycle

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_should_recycle_after_max_jobs_or_above_max_rss() -> None:
    """The job count and the resident size each decide on their own; 0 switches either off."""
    assert should_recycle(499, 300, max_jobs=500, max_rss_mb=1024) is None
    assert "500 jobs" in (should_recycle(500, 300, max_jobs=500, max_rss_mb=1024) or "")
    assert "1500 MB" in (should_recycle(3, 1500, max_jobs=500, max_rss_mb=1024) or "")
    assert should_recycle(10_000, 10_000, max_jobs=0, max_rss_mb=0) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim and /proc")
def test_give_memory_back_returns_freed_heap_pages_to_the_system() -> None:
    """200 MB freed behind one live block stays resident until trimmed; then it goes back."""
    blocks = [bytearray(64 * 1024) for _ in range(3200)]  # under glibc's mmap threshold: they live in the heap
    for block in blocks:
        block[::4096] = b"\x01" * len(block[::4096])  # touch every page
    keep = blocks[-1]  # the heap's top stays in use, so free() alone cannot shrink it
    del blocks
    before = resident_mb()
    assert give_memory_back() is True
    assert before - resident_mb() > 100
    assert keep[0] == 1


@pytest.mark.slow
def test_a_worker_above_its_memory_limit_starts_afresh_after_its_job(
        app, redis, webhooks, image_server, model_session, worker_env, tmp_path) -> None:
    """CATALOG_WORKER_MAX_RSS_MB below any real size: after each render the worker re-executes itself (same PID, a
    new RQ worker), and the fresh process renders the next product."""
    photo = (FIXTURES / "coffee.png").read_bytes()
    env = {**worker_env, "CATALOG_WORKER_MAX_RSS_MB": "1"}
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "catalog_service.cli", "worker", "--queues", "renders"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        names = [next_worker(redis, seen=set(), log_path=log_path)]
        for product in (1, 2):
            src = image_server.serve(f"/p{product}.png", photo)
            render_id = webhooks.send("product.created", {"id": product, "title": "Cup",
                                                          "images": [{"id": 1, "src": src}]}).get_json()["render_id"]
            status = wait_for_render(app, render_id, log_path)
            assert status == RenderStatus.SUCCEEDED, log_path.read_text()
            names.append(next_worker(redis, seen=set(names), log_path=log_path))
        assert worker.poll() is None  # still the same process: exec, not exit
        text = log_path.read_text()
        assert text.count("CATALOG_WORKER_MAX_RSS_MB=1); starting afresh") >= 2, text
        assert len(set(names)) == 3  # each one left RQ's registry as the next took its place
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def wait_for_render(app, render_id: int, log_path: Path) -> RenderStatus:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 90
    while True:
        with app.app_context():
            status = app.extensions["catalog_db"].session().get(Render, render_id).status
            app.extensions["catalog_db"].remove()
        if status.is_finished or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def next_worker(redis, *, seen: set[str], log_path: Path) -> str:  # type: ignore[no-untyped-def]
    """The name of the one RQ worker registered, once it is none seen before (the fresh process's)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        names = {worker.name for worker in RQWorker.all(connection=redis)}
        if len(names) == 1 and not names & seen:
            return names.pop()
        time.sleep(0.1)
    raise AssertionError(f"no new worker registered: {log_path.read_text()}")
