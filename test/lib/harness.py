"""Tells a broken test harness apart from a failing kvstore.

Every script test exits 0 when it passes, 1 when kvstore failed a check and
HARNESS_EXIT when the test's own machinery broke (a port, a mount, a helper
process, a bug in the test). test/lib/run_test turns that exit code into the
first line of the test's output, so a red CI says at once which it was.

Checks that kvstore failed raise AssertionError, SystemFailure or
TimeoutError (kvstore did not reach a state in time); anything else that
escapes a test is taken to be the harness's fault.
"""
import sys
import traceback
import unittest

HARNESS_EXIT = 99


class HarnessError(Exception):
    """The test's own machinery broke: says nothing about kvstore."""


class SystemFailure(Exception):
    """kvstore misbehaved: a check of the system under test failed."""


SYSTEM_FAILURES = (AssertionError, SystemFailure, TimeoutError)


def is_system_failure(exc):
    return isinstance(exc, SYSTEM_FAILURES)


def run_script(main):
    """Runs main() (which returns an exit code) and maps what escapes it."""
    try:
        code = main()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - classified below
        traceback.print_exc()
        if is_system_failure(e):
            print(f"FAILED: {type(e).__name__}: {e}", flush=True)
            sys.exit(1)
        print(f"HARNESS FAILURE: {type(e).__name__}: {e}", flush=True)
        sys.exit(HARNESS_EXIT)
    sys.exit(code or 0)


def unittest_main():
    """unittest.main, with errors that are not system failures reported as the
    harness's (exit HARNESS_EXIT) when no test failed a check."""
    prog = unittest.main(verbosity=2, exit=False)
    result = prog.result
    if result.wasSuccessful():
        sys.exit(0)
    system = list(result.failures) + [
        (t, err) for t, err in result.errors if _error_is_system(err)]
    if system:
        sys.exit(1)
    print("HARNESS FAILURE: every failing test raised an error of the harness, "
          "not a failed check of kvstore", flush=True)
    sys.exit(HARNESS_EXIT)


def case_failed(case):
    """Whether the unittest test `case` has failed so far: for its tearDown
    and cleanups, which keep a failed test's logs. (Python 3.11's
    _outcome.success reads True there even after a failure; the result
    holds the truth.)"""
    result = case._outcome.result
    return any(t is case for t, _ in result.failures + result.errors)


def _error_is_system(formatted):
    last = formatted.strip().splitlines()[-1] if formatted.strip() else ""
    return last.split(":", 1)[0].split(".")[-1] in {c.__name__ for c in SYSTEM_FAILURES}
