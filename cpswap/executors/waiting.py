"""Bounded polling shared by the executors: backoff, a deadline and progress lines. Not pure
(clock and sleep). The wait between polls is the boundary's ``next_wait``, as in its retry loop."""
from __future__ import annotations

import time
from collections.abc import Callable

from cpswap.core.errors import DeadlineError, TransientError
from cpswap.executors.boundary import next_wait

Progress = Callable[[str], None]


def wait_until(what: str, probe: Callable[[], tuple[bool, str]], *, deadline_s: float, progress: Progress,
               poll_s: float = 0.1, max_delay_s: float = 0.5) -> None:
    """Poll ``probe`` (→ done, state) with backoff until done; the default backoff stops at 0.5 s, so
    a join or a recreated pod is seen within half a second of being ready, for one cheap read a poll.
    A TransientError from the probe is a state, not a failure; the next poll waits what it asked for
    (``delay``), if anything. Prints the state whenever it changes; DeadlineError names the last."""
    end = time.monotonic() + deadline_s
    delay, last = poll_s, ""
    while True:
        asked = None
        try:
            done, state = probe()
        except TransientError as exc:
            done, state, asked = False, str(exc), exc.delay
        if done:
            return
        left = end - time.monotonic()
        if left <= 0:
            raise DeadlineError(f"{what}: not done after {deadline_s:.0f}s; last state: {state}")
        if state != last:
            progress(f"{what}: {state} ({left:.0f}s left)")
            last = state
        time.sleep(next_wait(backoff=delay, asked=asked, left=left))
        delay = min(delay * 1.5, max_delay_s)
