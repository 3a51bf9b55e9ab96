"""What threads of one process must not do at once: the pipeline runs several tasks' stages side by side.

torch's global random generator is one per process, and dropout and weight initialisation draw from it. Two
trainings in threads would interleave their draws, and neither would come out as it does alone. Code that seeds
that generator and then draws from it holds `GLOBAL_RNG` from the seed to the last draw, so threads take turns
and every result is the one a lone run gives. `holding(lock)` serialises other code whose libraries keep global
state (matplotlib's pyplot, torch.onnx.export).
"""

from __future__ import annotations

import functools
import threading

GLOBAL_RNG = threading.RLock()


def holding(lock):
    """A decorator: the function runs holding `lock`."""

    def decorate(function):
        @functools.wraps(function)
        def locked(*args, **kwargs):
            with lock:
                return function(*args, **kwargs)

        return locked

    return decorate


holds_global_rng = holding(GLOBAL_RNG)
