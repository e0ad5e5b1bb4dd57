"""`catalog-service up`: the web app, one worker and the sweeper as child processes of one command, for a trial.

Each child runs in a process group of its own, so Ctrl-C in the terminal reaches only this parent, which
then asks each child once (SIGTERM) to stop: the worker finishes its job, gunicorn its requests. When one
child ends by itself, the others are stopped too: a trial never goes on half running.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

STOP_GRACE_S = 30.0
"""How long children have to stop after SIGTERM (gunicorn's own graceful timeout) before they are killed."""

POLL_S = 0.5


def child_commands(host: str, port: int) -> dict[str, list[str]]:
    """The three processes of a trial, each the same `catalog-service` command an operator runs alone."""
    base = [sys.executable, "-m", "catalog_service.cli"]
    return {
        "web": [*base, "serve", "--host", host, "--port", str(port)],
        "worker": [*base, "worker"],
        "sweeper": [*base, "sweeper"],
    }


def run_together(commands: Mapping[str, Sequence[str]], env: Mapping[str, str], *,
                 echo: Callable[[str], None] = print, grace_s: float = STOP_GRACE_S) -> int:
    """Start every command; on SIGINT, SIGTERM or SIGHUP, or when one ends, stop them all. Returns the exit code:
    0 when stopped on request, else the code of the child that ended first (1 when that was 0)."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set())
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    children: dict[str, subprocess.Popen[bytes]] = {}
    ended: tuple[str, int] | None = None
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(list(command), env=dict(env), process_group=0)
            echo(f"started {name} (pid {children[name].pid})")
        while not stop.wait(POLL_S):
            ended = next(((name, child.returncode) for name, child in children.items()
                          if child.poll() is not None), None)
            if ended is not None:
                echo(f"{ended[0]} ended (exit code {ended[1]}): stopping the others")
                break
    finally:
        _stop_all(children, grace_s, echo)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if ended is None:
        return 0
    return ended[1] or 1


def _stop_all(children: Mapping[str, subprocess.Popen[bytes]], grace_s: float,
              echo: Callable[[str], None]) -> None:
    running = {name: child for name, child in children.items() if child.poll() is None}
    for child in running.values():
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for name, child in running.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"{name} did not stop within {grace_s:.0f} s: killed")
            child.kill()
            child.wait()
    if running:
        echo(f"stopped {', '.join(running)}")
