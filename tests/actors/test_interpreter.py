"""The interpreter with plain function calls: no event loop, no journal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import runwright as rw
from runwright.actors._commands import (
    CancelCommand,
    ChildResult,
    Command,
    Failure,
    GroupRequest,
    HookDisposeCommand,
    SleepCommand,
    SleepRequest,
    StartChildRequest,
    StepCommand,
    StepRequest,
    Value,
)
from runwright.actors._interpreter import Interpreter


def step(name: str, *args: Any) -> StepRequest:
    return StepRequest(name, None, args, {}, lambda: repr(args).encode())


def make(body: Callable[[], Coroutine[Any, Any, Any]], **kwargs: Any) -> Interpreter:
    return Interpreter("run-1", body, started_at=1000.0, **kwargs)


def names(commands: list[Command]) -> list[tuple[int, str]]:
    return [(c.cid, c.name if isinstance(c, StepCommand) else "sleep") for c in commands]


def test_sequential_steps_are_issued_one_at_a_time():
    async def body() -> int:
        a = await step("a")
        b = await step("b", a)
        return a + b

    interp = make(body)
    assert names(interp.start()) == [(0, "a")]
    assert names(interp.resolve(0, Value(1), 1001.0)) == [(1, "b")]
    assert interp.resolve(1, Value(2), 1002.0) == []
    assert interp.outcome == Value(3)


def test_gather_issues_in_argument_order_and_returns_in_argument_order():
    async def body() -> Any:
        return await GroupRequest("gather", (step("a"), step("b"), step("c")))

    interp = make(body)
    assert names(interp.start()) == [(0, "a"), (1, "b"), (2, "c")]
    interp.resolve(2, Value("C"), 1.0)
    interp.resolve(0, Value("A"), 2.0)
    assert interp.outcome is None
    interp.resolve(1, Value("B"), 3.0)
    assert interp.outcome == Value(["A", "B", "C"])


def test_gather_raises_the_first_error_in_delivery_order():
    async def body() -> Any:
        try:
            await GroupRequest("gather", (step("a"), step("b")))
        except KeyError as exc:
            return f"caught {exc.args[0]}"
        return "no"

    interp = make(body)
    interp.start()
    interp.resolve(1, Failure(KeyError("b")), 1.0)
    assert interp.outcome == Value("caught b")


def test_race_cancels_the_losers_before_the_body_goes_on():
    async def body() -> Any:
        return await GroupRequest("race", (step("slow"), SleepRequest(5, None)))

    interp = make(body)
    commands = interp.start()
    assert isinstance(commands[1], SleepCommand)
    assert interp.resolve(1, Value(None), 1.0) == [CancelCommand(0, "step")]
    assert interp.outcome == Value(None)
    assert interp.pending == {}
    # A late outcome of the cancelled step changes nothing.
    assert interp.resolve(0, Value("late"), 2.0) == []


def test_a_failing_gather_member_cancels_its_siblings_first():
    cleaned: list[str] = []

    async def member(name: str) -> Any:
        try:
            return await step(name)
        finally:
            cleaned.append(name)

    async def body() -> Any:
        try:
            await GroupRequest("gather", (member("a"), step("b"), SleepRequest(9, None)))
        except KeyError:
            return list(cleaned)
        return "no"

    interp = make(body)
    interp.start()
    assert interp.resolve(1, Failure(KeyError("b")), 1.0) == [
        CancelCommand(0, "step"),
        CancelCommand(2, "sleep"),
    ]
    assert interp.outcome == Value(["a"])


def test_a_cancelled_branch_cancels_its_own_groups_and_children():
    async def branch() -> Any:
        child = await StartChildRequest("kid", None, (), {}, lambda: b"")
        inner = GroupRequest("gather", (step("x"), GroupRequest("race", (SleepRequest(7, None),))))
        return child, await inner

    async def body() -> Any:
        return await GroupRequest("race", (branch(), step("fast")))

    interp = make(body)
    issued = interp.start()
    assert [c.label for c in issued] == [("child", "kid"), ("step", "fast"), ("step", "x"),
                                         ("sleep", "sleep")]  # fmt: skip
    cancels = interp.resolve(1, Value("won"), 1.0)
    assert sorted((c.cid, c.kind) for c in cancels) == [
        (0, "child"),
        (2, "step"),
        (3, "sleep"),
    ]
    assert interp.outcome == Value("won")


def test_a_child_awaited_but_not_started_by_the_loser_keeps_running():
    async def body() -> Any:
        cid, _ = await StartChildRequest("kid", None, (), {}, lambda: b"")
        return await GroupRequest("race", (ChildResult(cid), SleepRequest(1, None)))

    interp = make(body)
    interp.start()
    assert interp.resolve(1, Value(None), 1.0) == []
    assert interp.outcome == Value(None)


def test_leaving_a_hook_in_a_cancelled_branch_disposes_it():
    async def waits_for_approval() -> Any:
        async with rw.hook("approve") as approval:
            return await approval

    async def body() -> Any:
        return await GroupRequest("race", (waits_for_approval(), SleepRequest(60, None)))

    interp = make(body)
    assert [c.label for c in interp.start()] == [("hook", "approve"), ("sleep", "sleep")]
    assert interp.resolve(1, Value(None), 1.0) == [HookDisposeCommand(0)]
    assert interp.outcome == Value(None)


def test_run_cancel_releases_everything_the_body_waited_for():
    async def body() -> Any:
        try:
            await GroupRequest("gather", (step("a"), SleepRequest(5, None)))
        except rw.Cancelled:
            return "cleaned up"
        return "no"

    interp = make(body)
    interp.start()
    assert interp.cancel(1.0) == [CancelCommand(0, "step"), CancelCommand(1, "sleep")]
    assert interp.outcome == Value("cleaned up")


def test_nested_groups_with_plain_coroutines():
    async def pair(tag: str) -> str:
        first = await step(f"{tag}1")
        second = await step(f"{tag}2")
        return first + second

    async def body() -> Any:
        return await GroupRequest("gather", (pair("x"), GroupRequest("race", (pair("y"),))))

    interp = make(body)
    assert names(interp.start()) == [(0, "x1"), (1, "y1")]
    assert names(interp.resolve(1, Value("Y"), 1.0)) == [(2, "y2")]
    assert names(interp.resolve(0, Value("X"), 2.0)) == [(3, "x2")]
    interp.resolve(3, Value("x"), 3.0)
    interp.resolve(2, Value("y"), 4.0)
    assert interp.outcome == Value(["Xx", "Yy"])


def test_empty_gather_and_empty_race():
    async def body() -> Any:
        empty = await GroupRequest("gather", ())
        try:
            await GroupRequest("race", ())
        except ValueError as exc:
            return empty, str(exc)
        return None

    interp = make(body)
    assert interp.start() == []
    assert interp.outcome == Value(([], "rw.race() needs at least one awaitable"))


def test_awaiting_a_foreign_awaitable_raises_inside_the_workflow():
    async def body() -> str:
        try:
            await asyncio.sleep(0)
        except rw.RunwrightError as exc:
            return str(exc)
        return "no"

    interp = make(body)
    interp.start()
    assert isinstance(interp.outcome, Value)
    assert "not a runwright operation" in interp.outcome.value


def test_the_workflow_clock_is_the_time_of_the_resuming_event():
    async def body() -> Any:
        seen = [rw.now().timestamp()]
        await step("a")
        seen.append(rw.now().timestamp())
        return seen

    interp = make(body)
    interp.start()
    interp.resolve(0, Value(None), 1234.5)
    assert interp.outcome == Value([1000.0, 1234.5])


def test_a_changed_step_name_is_a_non_determinism_error():
    async def body() -> Any:
        await step("charge")
        return await step("ship_v2")

    interp = make(body, recorded={0: ("step", "charge"), 1: ("step", "ship")})
    interp.start()
    with pytest.raises(rw.NonDeterminismError) as info:
        interp.resolve(0, Value(None), 1.0)
    error = info.value
    assert (error.run_id, error.position) == ("run-1", 1)
    assert error.recorded == "step 'ship'"
    assert error.requested == "step 'ship_v2'"


def test_a_sleep_where_a_step_was_recorded_is_a_non_determinism_error():
    async def body() -> Any:
        await SleepRequest(1, None)

    interp = make(body, recorded={0: ("step", "charge")})
    with pytest.raises(rw.NonDeterminismError, match=r"recorded step 'charge'.*asks for sleep"):
        interp.start()


def test_returning_before_recorded_commands_is_a_non_determinism_error():
    async def body() -> Any:
        return 1

    interp = make(body, recorded={0: ("step", "charge")})
    with pytest.raises(rw.NonDeterminismError, match="the workflow to return"):
        interp.start()


def test_a_result_for_a_command_never_issued_is_a_non_determinism_error():
    async def body() -> Any:
        await step("a")

    interp = make(body)
    interp.start()
    with pytest.raises(rw.NonDeterminismError, match="position 3"):
        interp.resolve(3, Value(None), 1.0)


def test_workflow_operations_outside_a_workflow_raise():
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.sleep\(\)"):
        rw.sleep(1)
    with pytest.raises(rw.NotInWorkflowError, match=r"rw\.gather\(\)"):
        rw.gather()
    with pytest.raises(rw.NotInWorkflowError):
        rw.now()
    with pytest.raises(rw.NotInWorkflowError):
        rw.step_info()


# -- determinism: random workflow shapes, random delivery orders ----------------------

Shape = list[Any]


def shapes() -> st.SearchStrategy[Shape]:
    """A workflow shape: a list of items; an item is a step or a gather/race of shapes."""
    leaf = st.just("step") | st.just("sleep")
    return st.recursive(
        st.lists(leaf, min_size=1, max_size=3),
        lambda inner: st.lists(
            leaf
            | st.tuples(
                st.sampled_from(["gather", "race"]), st.lists(inner, min_size=1, max_size=3)
            ),
            min_size=1,
            max_size=3,
        ),
        max_leaves=12,
    )


def body_for(shape: Shape) -> Callable[[], Coroutine[Any, Any, Any]]:
    def build(items: Shape, path: str) -> Coroutine[Any, Any, Any]:
        async def run() -> Any:
            results = []
            for index, item in enumerate(items):
                here = f"{path}.{index}"
                awaitable: Awaitable[Any]
                if item == "step":
                    awaitable = step(here)
                elif item == "sleep":
                    awaitable = SleepRequest(1, None)
                else:
                    kind, children = item
                    awaitable = GroupRequest(
                        kind, tuple(build(c, f"{here}.{i}") for i, c in enumerate(children))
                    )
                results.append(await awaitable)
            return results

        return run()

    return lambda: build(shape, "r")


def _positions(commands: list[Command]) -> list[int]:
    return [c.cid for c in commands if not isinstance(c, CancelCommand)]


def _cancelled(commands: list[Command]) -> set[int]:
    return {c.cid for c in commands if isinstance(c, CancelCommand)}


def drive(shape: Shape, picks: list[int], recorded: dict[int, tuple[str, str]] | None = None):
    """Run *shape*, resolving pending commands in the order *picks* chooses.

    A cancelled command is never resolved (its outcome would not be journaled).
    """
    interp = make(body_for(shape), recorded=recorded)
    issued = list(interp.start())
    pending = [cid for cid in _positions(issued) if cid not in _cancelled(issued)]
    log: list[int] = []

    def resolve(cid: int) -> None:
        log.append(cid)
        new = interp.resolve(cid, Value(f"v{cid}"), float(len(log)))
        issued.extend(new)
        cancelled = _cancelled(new)
        pending[:] = [c for c in pending + _positions(new) if c not in cancelled]

    for pick in picks:
        if not pending or interp.outcome is not None:
            break
        resolve(pending.pop(pick % len(pending)))
    while pending and interp.outcome is None:
        resolve(pending.pop(0))
    return interp, issued, log


def replay(
    shape: Shape, issued: list[Command], log: list[int]
) -> tuple[Interpreter, list[Command]]:
    recorded = {c.cid: c.label for c in issued if not isinstance(c, CancelCommand)}
    interp = make(body_for(shape), recorded=recorded)
    again = list(interp.start())
    for index, cid in enumerate(log, start=1):
        again += interp.resolve(cid, Value(f"v{cid}"), float(index))
    return interp, again


def _summary(commands: list[Command]) -> list[tuple[str, int, Any]]:
    return [
        ("cancel", c.cid, c.kind) if isinstance(c, CancelCommand) else ("issue", c.cid, c.label)
        for c in commands
    ]


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), picks=st.lists(st.integers(0, 50), max_size=40))
def test_replay_in_journal_order_reproduces_commands_and_outcome(shape: Shape, picks: list[int]):
    first, issued, log = drive(shape, picks)
    assert first.outcome is not None
    second, again = replay(shape, issued, log)
    assert _summary(again) == _summary(issued)
    assert second.outcome == first.outcome


@settings(max_examples=200, deadline=None)
@given(shape=shapes(), picks=st.lists(st.integers(0, 50), max_size=40))
def test_when_the_body_returns_nothing_it_started_is_left_running(shape: Shape, picks: list[int]):
    """Structured concurrency: every command is resolved or cancelled by the end."""
    first, issued, log = drive(shape, picks)
    assert first.outcome is not None
    assert set(_positions(issued)) == set(log) | _cancelled(issued)
    assert not set(log) & _cancelled(issued)
    assert first.pending == {}


@settings(max_examples=100, deadline=None)
@given(shape=shapes(), picks=st.lists(st.integers(0, 50), max_size=40))
def test_correlation_ids_are_dense_and_in_issue_order(shape: Shape, picks: list[int]):
    _, issued, _ = drive(shape, picks)
    assert _positions(issued) == list(range(len(_positions(issued))))


# -- patches ----------------------------------------------------------------------------


def _receipt_body(*, patched: bool | None) -> Callable[[], Coroutine[Any, Any, Any]]:
    """Old code (patched=None), new code with rw.patched, or the deprecated form (False)."""

    async def body() -> Any:
        await step("prepare")
        if patched is None:
            sent = await step("send_receipt")
        elif patched:
            sent = await step("send_receipt_v2" if rw.patched("v2") else "send_receipt")
        else:
            rw.deprecate_patch("v2")
            sent = await step("send_receipt_v2")
        return sent

    return body


def _labels(commands: list[Command]) -> list[tuple[int, Any]]:
    return [(c.cid, c.label) for c in commands if not isinstance(c, CancelCommand)]


def test_a_new_run_records_the_patch_and_takes_the_new_branch():
    interp = make(_receipt_body(patched=True))
    interp.start()
    assert _labels(interp.resolve(0, Value("ok"), 1.0)) == [
        (1, ("patch", "v2")),
        (2, ("step", "send_receipt_v2")),
    ]


def test_a_run_that_passed_the_point_on_old_code_replays_the_old_branch():
    recorded = {0: ("step", "prepare"), 1: ("step", "send_receipt")}
    interp = make(_receipt_body(patched=True), recorded=recorded)
    interp.start()
    assert _labels(interp.resolve(0, Value("ok"), 1.0)) == [(1, ("step", "send_receipt"))]
    interp.resolve(1, Value("v1 sent"), 2.0)
    assert interp.outcome == Value("v1 sent")


def test_a_run_that_had_not_reached_the_point_takes_the_new_branch():
    interp = make(_receipt_body(patched=True), recorded={0: ("step", "prepare")})
    interp.start()
    assert _labels(interp.resolve(0, Value("ok"), 1.0))[0] == (1, ("patch", "v2"))


def test_a_recorded_marker_replays_the_new_branch_and_survives_deprecation_and_deletion():
    recorded = {0: ("step", "prepare"), 1: ("patch", "v2"), 2: ("step", "send_receipt_v2")}
    still_patched = make(_receipt_body(patched=True), recorded=recorded)
    still_patched.start()
    assert _labels(still_patched.resolve(0, Value("ok"), 1.0)) == [
        (1, ("patch", "v2")),
        (2, ("step", "send_receipt_v2")),
    ]
    deprecated = make(_receipt_body(patched=False), recorded=recorded)
    deprecated.start()
    assert _labels(deprecated.resolve(0, Value("ok"), 1.0)) == [(2, ("step", "send_receipt_v2"))]
    for interp in (still_patched, deprecated):
        interp.resolve(2, Value("v2 sent"), 2.0)
        assert interp.outcome == Value("v2 sent")

    async def deleted() -> Any:
        await step("prepare")
        return await step("send_receipt_v2")

    interp = make(deleted, recorded=recorded)
    interp.start()
    assert _labels(interp.resolve(0, Value("ok"), 1.0)) == [(2, ("step", "send_receipt_v2"))]
    interp.resolve(2, Value("v2 sent"), 2.0)
    assert interp.outcome == Value("v2 sent")


def test_deprecate_patch_records_nothing_in_a_new_run():
    interp = make(_receipt_body(patched=False))
    interp.start()
    assert _labels(interp.resolve(0, Value("ok"), 1.0)) == [(1, ("step", "send_receipt_v2"))]


def test_a_patch_id_must_be_a_non_empty_string():
    async def body() -> Any:
        rw.patched("")

    interp = make(body)
    interp.start()
    assert isinstance(interp.outcome, Failure)
    assert "patch id" in str(interp.outcome.error)


def test_select_names_the_winner_and_needs_a_branch():
    async def body() -> Any:
        won = await rw.select(slow=step("slow"), fast=step("fast"))
        try:
            rw.select()
        except ValueError as exc:
            return won, str(exc)
        return won, "no error"

    interp = make(body)
    interp.start()
    assert interp.resolve(1, Value("F"), 1.0) == [CancelCommand(0, "step")]
    assert interp.outcome == Value(
        (("fast", "F"), "rw.select() needs at least one named awaitable")
    )
