"""torch's global random generator is one per process, and dropout and weight initialisation draw from it. Two
trainings in threads of one process (the pipeline runs several tasks side by side) would interleave their draws,
and neither would come out as it does alone. Code that seeds that generator and then draws from it holds
`GLOBAL_RNG` from the seed to the last draw, so threads take turns and every result is the one a lone run gives.
"""

from __future__ import annotations

import functools
import threading

GLOBAL_RNG = threading.RLock()


def holds_global_rng(function):
    """Run `function` holding GLOBAL_RNG (a decorator)."""

    @functools.wraps(function)
    def locked(*args, **kwargs):
        with GLOBAL_RNG:
            return function(*args, **kwargs)

    return locked
