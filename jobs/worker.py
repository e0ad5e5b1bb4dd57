"""`catalog-service worker`: an RQ worker that loads the cutout model once and runs jobs in-process."""

from __future__ import annotations

import logging

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from catalog_service import services
from catalog_service.imaging.cutout import get_session
from catalog_service.services import Services

from .queues import ALL_QUEUES, get_queue

log = logging.getLogger(__name__)

PUBSUB_POLL_S = 1.0
"""How often the worker's command listener looks up; also the longest a stopping worker waits for it."""


class Worker(SimpleWorker):
    """RQ's SimpleWorker, its command listener (pub/sub thread) waking every PUBSUB_POLL_S instead of 60 s.

    Upstream behaviour worked around: RQ 3.0's `Worker.subscribe` starts the listener with
    `pubsub.run_in_thread(sleep_time=60)`. When the worker stops, RQ's `unsubscribe()` unsubscribes and then
    calls `PubSubWorkerThread.stop()`, which in redis-py 8.2 joins the thread with no timeout; the thread,
    left without a subscription, sits in `PubSub.get_message(timeout=60)` waiting for one. A worker told to
    stop (SIGTERM, a deploy) could so take up to a minute to exit after its last job. This is RQ's subscribe
    with only the wait changed; without it, test_a_stopping_worker_leaves_its_command_listener_at_once
    (tests/jobs/test_worker_shutdown.py) takes 60 s and fails.
    """

    def subscribe(self) -> None:
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ's __init__ sets this attribute to None without an annotation, so mypy takes its type to be None.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=PUBSUB_POLL_S, daemon=True, exception_handler=self._pubsub_exception_handler)


def run_worker(svc: Services, queues: tuple[str, ...] = ALL_QUEUES, *, burst: bool = False) -> bool:
    """Work the queues until stopped (or until empty with burst). Returns whether any job ran."""
    services.install(svc)
    # SimpleWorker runs each job in this process, so the model loaded here serves every job;
    # a forking worker would pay for it again in each child.
    get_session(svc.config.cutout_model, svc.config.model_dir)
    log.info("worker model=%s queues=%s loaded", svc.config.cutout_model, ",".join(queues))
    worker = Worker([get_queue(name, svc.redis) for name in queues], connection=svc.redis, serializer=JSONSerializer)
    # The scheduler moves retries whose backoff has passed (RQ keeps them in its scheduled registry) back
    # onto their queue; without it a job that failed once would never run again.
    return worker.work(burst=burst, with_scheduler=True, logging_level=svc.config.log_level.upper())
