"""Stop a mutant's test run as a timeout as soon as one test runs far past its clean time.

mutmut limits a mutant's whole run to about ten times the summed clean time of every test it
runs, so a mutant of the search loop that loops forever holds a core for many minutes before
mutmut stops it. `PerTestTimeout` (a pytest plugin `tools.mutate` hands to each mutant's run)
gives each test its own CPU budget instead: ``constant + factor x`` the test's clean time. A test
past its budget ends the run at once with mutmut's timeout exit code, so the mutant is counted as
noticed (a timeout), as mutmut's own limit would have counted it, only sooner.

The budget is CPU time of this process (``ITIMER_PROF``), so a busy machine does not make a
test look slow.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Generator, Mapping
from typing import Any

import pytest

TIMEOUT = 36  # the exit code mutmut reads as "timeout"


class PerTestTimeout:
    """A pytest plugin: each test (setup, call and teardown) gets ``constant + factor x`` its
    duration in ``durations`` (seconds, by node id; 0 for a test not there) of CPU time; past
    that the process exits with `TIMEOUT`."""

    def __init__(
        self, durations: Mapping[str, float], *, constant: float = 10.0, factor: float = 10.0
    ) -> None:
        self.durations = durations
        self.constant = constant
        self.factor = factor

    def budget(self, nodeid: str) -> float:
        """The CPU seconds the test ``nodeid`` may take."""
        return self.constant + self.factor * self.durations.get(nodeid, 0.0)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Generator[None]:
        previous = signal.signal(signal.SIGPROF, _timed_out)
        signal.setitimer(signal.ITIMER_PROF, self.budget(item.nodeid))
        try:
            return (yield)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous)


def _timed_out(signum: int, frame: object) -> None:
    os._exit(TIMEOUT)  # at once: the run's result is decided, and pytest's cleanup may loop too
