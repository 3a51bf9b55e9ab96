"""When a Prefect task may try again: only after errors that another attempt can cure.

A malformed row, an unknown task, a bad vector file or a full disk fail the same way every time; retrying them
only repeats the traceback and delays the message. A dropped connection, a locked SQLite store or an
interrupted system call may well pass on the next attempt, and a training task resumes from its checkpoint.
"""

from __future__ import annotations

import errno
import sqlite3

from prefect.cache_policies import NO_CACHE

# OS errors worth another attempt: the resource was busy or the operation was interrupted, not refused.
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
                     errno.ECONNABORTED, errno.EPIPE, errno.ENETUNREACH, errno.EHOSTUNREACH}


def is_transient(error: BaseException) -> bool:
    """Whether `error` may not happen again on a retry."""
    if isinstance(error, (ConnectionError, TimeoutError, InterruptedError)):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return "locked" in str(error) or "busy" in str(error)
    if isinstance(error, OSError):
        return error.errno in _TRANSIENT_ERRNOS
    cause = error.__cause__ or error.__context__
    # Libraries wrap I/O errors in their own (MLflow's MlflowException, httpx's errors): judge the root cause.
    return cause is not None and cause is not error and is_transient(cause)


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failure's exception is transient."""
    try:
        state.result()
    except Exception as error:  # the task's own exception, re-raised by the failed state
        return is_transient(error)
    return False


# Options for tasks that read and write files or talk to MLflow; DVC decides what reruns, so no Prefect caching.
IO_TASK = dict(retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
# Training: one retry, which resumes from the checkpoint the failed attempt left behind.
TRAIN_TASK = dict(retries=1, retry_delay_seconds=5, retry_condition_fn=retry_if_transient, cache_policy=NO_CACHE)
