"""The Prefect API a stage process talks to: the server PREFECT_API_URL names, or a private temporary one.

Prefect's own temporary server gives up after 20 s, which a busy machine exceeds (every `dvc repro` stage is a
process of its own that starts one), and it outlives a process killed with SIGKILL. Ours waits as long as
`TINYBERT_PREFECT_STARTUP_TIMEOUT` seconds (default 600), measured on the wall clock, and is bound to its parent:
the kernel ends it when the stage process dies, however it dies (Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import httpx

STARTUP_TIMEOUT_ENV = "TINYBERT_PREFECT_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT = 600.0


class PrefectAPIError(RuntimeError):
    """No Prefect API could be reached or started; the message says which URL and what the server printed."""


def startup_timeout() -> float:
    return float(os.environ.get(STARTUP_TIMEOUT_ENV) or DEFAULT_STARTUP_TIMEOUT)


@contextlib.contextmanager
def prefect_api(timeout: float | None = None) -> Iterator[str]:
    """Flows called inside the block use a reachable API; yields its URL."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    timeout = startup_timeout() if timeout is None else timeout
    configured = PREFECT_API_URL.value()
    if configured:
        wait_until_healthy(configured, timeout)
        yield configured
        return
    with temporary_server(timeout) as url, temporary_settings(updates={PREFECT_API_URL: url}):
        try:
            yield url
        finally:
            _flush_logs()  # before the server goes: the last log lines of the flow are still queued for it


def _flush_logs() -> None:
    """Send the queued log lines and events while the server is still there (else each process's last words
    are an "Error logging to API" once it is gone)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=30)
        except Exception:  # noqa: BLE001 - losing a log line at exit must not turn a finished stage into a failed one
            pass


@contextlib.contextmanager
def temporary_server(timeout: float) -> Iterator[str]:
    """A Prefect API server on a free 127.0.0.1 port (no UI), stopped when the block ends or this process dies."""
    from prefect.settings import get_current_settings

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
               "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors, preexec_fn=_die_with_parent)
        try:
            wait_until_healthy(url, timeout, process, errors)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen | None = None, errors=None) -> None:
    """Poll `<url>/health` until it answers 200, for at most `timeout` wall-clock seconds."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise PrefectAPIError(f"the temporary Prefect server for {url} exited with code {process.returncode}: {_read(errors)}")
            try:
                response = client.get(f"{url.rstrip('/')}/health")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            time.sleep(0.5)
    raise PrefectAPIError(
        f"Prefect API {url} not healthy after {timeout:.0f} s ({last}); raise {STARTUP_TIMEOUT_ENV} on a busy machine"
        + (f"; server output: {_read(errors)}" if errors is not None else "")
    )


def _read(errors) -> str:
    if errors is None:
        return ""
    errors.seek(0)
    return errors.read().decode(errors="replace")[-2000:] or "(nothing)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel to send SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
