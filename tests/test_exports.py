"""The public surface is exactly what ``runwright.__all__`` lists."""

from __future__ import annotations

import runwright as rw
import runwright.asgi
import runwright.testing


def test_all_names_exist_and_are_sorted():
    # Constants first, then the rest in plain order (isort's order, which ruff keeps).
    assert sorted(rw.__all__, key=lambda name: (not name.isupper(), name)) == rw.__all__
    for name in rw.__all__:
        assert hasattr(rw, name), name


def test_no_private_module_leaks_into_the_namespace():
    public = {name for name in dir(rw) if not name.startswith("_")}
    subpackages = {"actors", "asgi", "journal", "streams", "testing"}
    assert public - subpackages - {"annotations"} == set(rw.__all__)


def test_the_issue_contract_names_are_exported():
    contract = {
        "step", "workflow", "sleep", "sleep_until", "gather", "race", "now", "random",
        "uuid4", "run_info", "step_info", "Runtime", "RunStatus", "RunFailed",
        "RunCancelled", "FatalError", "RetryableError", "StepFailed",
        "NonDeterminismError", "run", "StepTimeout", "patched", "deprecate_patch",
        "RunStuck", "RunProblem", "schedule",
    }  # fmt: skip
    assert contract <= set(rw.__all__)


def test_testing_tier():
    assert runwright.testing.__all__ == [
        "FakeClock",
        "ReplayDivergence",
        "ReplayResult",
        "replay",
        "skip_time",
    ]


def test_asgi_tier():
    assert runwright.asgi.__all__ == [
        "Format",
        "StreamResponse",
        "interrupt_streams_on_signals",
        "stream_response",
    ]
