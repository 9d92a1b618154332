"""tools.mutant_timeout: a test that runs past its CPU budget ends the run with mutmut's timeout
exit code; tests within their budgets run as usual."""

import subprocess
import sys
import textwrap
from pathlib import Path

from tools.mutant_timeout import TIMEOUT, PerTestTimeout

ROOT = Path(__file__).resolve().parents[1]

TESTS = textwrap.dedent(
    """
    import time

    def test_quick():
        assert sum(range(1000)) == 499500

    def spend(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    def test_busy_a():
        spend(0.15)

    def test_busy_b():
        spend(0.15)

    def test_spins():
        while True:
            pass
    """
)


def run(tmp_path: Path, durations: dict[str, float], *selected: str, constant: float = 0.25) -> int:
    (tmp_path / "test_cases.py").write_text(TESTS)
    script = textwrap.dedent(
        f"""
        import sys
        import pytest
        from tools.mutant_timeout import PerTestTimeout
        plugin = PerTestTimeout({durations!r}, constant={constant!r}, factor=2.0)
        args = ["-q", "-x", "-p", "no:cacheprovider", "--rootdir", {str(tmp_path)!r}]
        sys.exit(pytest.main(args + {[str(tmp_path / s) for s in selected]!r}, plugins=[plugin]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return done.returncode


def test_a_test_past_its_budget_ends_the_run_as_a_timeout(tmp_path):
    assert run(tmp_path, {}, "test_cases.py::test_quick", "test_cases.py::test_spins") == TIMEOUT


def test_tests_within_their_budgets_pass(tmp_path):
    assert run(tmp_path, {}, "test_cases.py::test_quick") == 0


def test_each_test_gets_its_own_budget(tmp_path):
    """Two tests of 0.15 CPU seconds each fit budgets of 0.25 s each, though not one of 0.25 s."""
    assert run(tmp_path, {}, "test_cases.py::test_busy_a", "test_cases.py::test_busy_b") == 0


def test_a_test_s_clean_duration_widens_its_budget(tmp_path):
    """0.15 CPU seconds overrun a budget of 0.05 s and fit 0.05 s + 2 x a clean time of 0.1 s."""
    busy = "test_cases.py::test_busy_a"
    assert run(tmp_path, {}, busy, constant=0.05) == TIMEOUT
    assert run(tmp_path, {busy: 0.1}, busy, constant=0.05) == 0


def test_the_budget_is_the_constant_plus_factor_times_the_clean_duration():
    plugin = PerTestTimeout({"t.py::a": 3.0}, constant=10.0, factor=10.0)
    assert plugin.budget("t.py::a") == 40.0
    assert plugin.budget("t.py::unknown") == 10.0
