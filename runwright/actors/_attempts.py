"""A step's attempts: claimed, run, timed out, retried, until one outcome is final.

A step's attempts belong to a task of its own (started by the run's actor
under a cancel scope that the actor cancels when the workflow stops waiting
for the step). Each attempt is claimed with a conditional write, runs the
step's function with the step's context and streams, and is retried with
backoff on the runtime's clock; only the final outcome is posted to the
actor. Losing a claim ends the task silently: what won is in the journal.

A fault of the journal is not the step's: when a write the attempt needs
fails (its claim, its retry, a chunk it streamed), the write is retried once
the journal takes writes again, and an attempt that met such a fault is
abandoned and followed by a new one, as after a crash, whatever the step's
retry budget.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from .._attributes import step_attributes
from .._context import StepInfo, current_step
from .._exceptions import EncodeError, FatalError, JournalError, RetryableError, StepTimeout
from ..journal._attributes import write_attributes
from ..journal._codec import encode_error
from ..journal._tx import Tx
from ..streams._hub import AttemptStreams, current_attempt
from ._commands import StepCommand
from ._messages import JournalChanged, StepDone

if TYPE_CHECKING:
    from .._definitions import StepDefinition
    from ._actor import RunActor
    from ._supervisor import Supervisor

__all__ = ["Launch", "execute"]

log = logging.getLogger("runwright")


#: What a step task is asked to run: the command, its cancel scope, its first attempt,
#: whether that attempt is claimed already, and when it may start.
Launch = tuple[StepCommand, anyio.CancelScope, int, bool, "float | None"]


async def execute(
    actor: RunActor,
    command: StepCommand,
    scope: anyio.CancelScope,
    attempt: int,
    claimed: bool,
    retry_at: float | None,
) -> None:
    """Run a step's attempts until one succeeds or it fails for good; hand the outcome
    to the run's actor. Then carry on with the step that outcome launched, if the
    actor handed one back (see :meth:`RunActor.carry`): a sequential workflow's steps
    all run in one task."""
    launch: Launch | None = (command, scope, attempt, claimed, retry_at)
    while launch is not None:
        launch = await _run_step(actor, *launch)


async def _run_step(
    actor: RunActor,
    command: StepCommand,
    scope: anyio.CancelScope,
    attempt: int,
    claimed: bool,
    retry_at: float | None,
) -> Launch | None:
    sup, run_id, cid, name = actor.sup, actor.run_id, command.cid, command.name
    definition: StepDefinition[Any, Any] = command.definition
    outcome: StepDone | None = None
    fault_delay = 0.05
    with scope:
        if retry_at is not None:
            await sup.clock.sleep_until(retry_at)
        while True:
            if not claimed:
                # An interrupted attempt is always followed by another, even
                # past the retry budget: the step never got to fail.
                won = await _write_until_taken(
                    sup,
                    functools.partial(
                        Tx.start_attempt,
                        run_id=run_id,
                        cid=cid,
                        name=name,
                        attempt=attempt,
                        at=sup.clock.now(),
                    ),
                )
                if not won:
                    break
            claimed = False
            if actor.trace is None:
                ok, payload, error_or_none, attributes = await _attempt(actor, command, attempt)
            else:
                ok, payload, error_or_none, attributes = await _traced(actor, command, attempt)
            fault = None if ok else _journal_fault(error_or_none)
            if fault is not None:
                log.info(
                    "run %s step %s attempt %d abandoned: the journal failed under it: %s",
                    run_id,
                    name,
                    attempt,
                    fault,
                )
                attempt += 1
                await sup.journal.backoff(fault_delay)
                fault_delay = min(fault_delay * 2, 2.0)
                continue
            fault_delay = 0.05
            if ok:
                outcome = StepDone(cid, name, attempt, True, payload, attributes)
                break
            assert error_or_none is not None
            error = error_or_none
            if _final(error, attempt, definition):
                outcome = StepDone(cid, name, attempt, False, payload, attributes)
                break
            delay = (
                error.retry_after
                if isinstance(error, RetryableError) and error.retry_after is not None
                else definition.backoff(attempt)
            )
            at = sup.clock.now()
            when = at + delay
            won = await _write_until_taken(
                sup,
                functools.partial(
                    _retry, run_id, cid, name, attempt, payload, when, at, attributes
                ),
            )
            if not won:
                break
            await sup.clock.sleep_until(when)
            attempt += 1
    if outcome is not None:
        # Outside the step's scope: cancelling the step must not cancel the
        # activation that journals its result.
        return await actor.carry(outcome)
    if actor.in_flight.get(cid) is scope:
        # A claim was lost: another process recorded the step's outcome, or
        # claimed it for the run's new owner. The step is no longer in
        # flight here (a run whose body has returned ends only when none
        # is); what the journal holds now is followed.
        del actor.in_flight[cid]
        await actor.deliver(JournalChanged())
    return None


def _retry(
    run_id: str,
    cid: int,
    name: str,
    attempt: int,
    error: bytes,
    retry_at: float,
    at: float,
    attributes: Attributes,
    tx: Tx,
) -> bool:
    """Record a failed attempt that will be retried, with the attributes it set."""
    won = tx.retry_step(run_id, cid, name, attempt, error, retry_at, at)
    if won and attributes:
        write_attributes(tx, run_id, attributes, at, cid=cid, attempt=attempt)
    return won


#: What ``rw.set_attribute`` set in an attempt: (key, text, type name, payload).
Attributes = tuple[tuple[str, str, str, bytes], ...]


def _final(error: Exception, attempt: int, definition: StepDefinition[Any, Any]) -> bool:
    """Whether a failed attempt is the step's last (it is not retried)."""
    return isinstance(error, FatalError | EncodeError) or attempt >= definition.max_attempts


async def _traced(
    actor: RunActor, command: StepCommand, attempt: int
) -> tuple[bool, bytes, Exception | None, Attributes]:
    """:func:`_attempt` in a span of its own, current while the step runs, that says how
    the attempt ended: ok, failed, retrying, cancelled (the workflow stopped waiting
    for it) or interrupted (a shutdown, another process took the run, a journal fault)."""
    trace, clock = actor.trace, actor.sup.clock
    assert trace is not None
    span = trace.step_started(command.name, command.cid, attempt, clock.now())
    try:
        with trace.current(span):
            result = await _attempt(actor, command, attempt)
    except BaseException:
        released = command.cid in actor.released
        trace.step_ended(span, "cancelled" if released else "interrupted", clock.now())
        raise
    ok, _, error, _ = result
    if ok:
        outcome = "ok"
    elif _journal_fault(error) is not None:
        outcome = "interrupted"
    else:
        assert error is not None
        outcome = "failed" if _final(error, attempt, command.definition) else "retrying"
    trace.step_ended(span, outcome, clock.now(), error)
    return result


async def _attempt(
    actor: RunActor, command: StepCommand, attempt: int
) -> tuple[bool, bytes, Exception | None, Attributes]:
    """Run one attempt: whether it succeeded, its result or error payload, the error,
    and the attributes it set (journaled with its end)."""
    attributes: dict[str, tuple[str, str, str, object]] = {}
    sup = actor.sup
    definition: StepDefinition[Any, Any] = command.definition
    info = StepInfo(actor.run_id, f"{actor.run_id}:{command.cid}", command.name, attempt)
    streams = AttemptStreams(sup.streams, info.step_id, attempt)
    attributes_token = step_attributes.set(attributes)
    token = current_step.set(info)
    streams_token = current_attempt.set(streams)
    sup.step_started()
    try:
        try:
            async with sup.step_limiter:
                if definition.timeout is None:
                    result = await definition.invoke(command.args, command.kwargs)
                else:
                    with anyio.move_on_after(definition.timeout) as deadline:
                        result = await definition.invoke(command.args, command.kwargs)
                    if deadline.cancelled_caught:
                        raise StepTimeout(command.name, definition.timeout, attempt)
        except Exception as exc:
            # A failed attempt's chunks, too, are durable before its outcome
            # (chunks the journal could not take make it the journal's fault).
            if streams.touched:
                with anyio.CancelScope(shield=True):
                    try:
                        await streams.settle()
                    except JournalError as fault:
                        raise fault from exc
                    except Exception:
                        pass  # a stream error of another kind: the step's own error stands
            raise
        except BaseException:
            if streams.touched:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await streams.settle()
            raise
        # The outcome is journaled after what the step wrote is durable; a
        # chunk that could not be written fails the attempt.
        if streams.touched:
            with anyio.CancelScope(shield=True):
                await streams.settle()
    except Exception as exc:
        log.debug(
            "run %s step %s attempt %d failed",
            actor.run_id,
            command.name,
            attempt,
            exc_info=True,
        )
        return False, _error_payload(sup, exc), exc, _encoded(sup, attributes)
    finally:
        current_attempt.reset(streams_token)
        current_step.reset(token)
        step_attributes.reset(attributes_token)
        sup.step_finished()
    try:
        return True, sup.codec.encode(result), None, _encoded(sup, attributes)
    except EncodeError as exc:
        error = exc.at(step=command.name, argument="return value")
        return False, _error_payload(sup, error), error, _encoded(sup, attributes)


def _encoded(sup: Supervisor, attributes: dict[str, tuple[str, str, str, object]]) -> Attributes:
    """The attributes an attempt set, with their values encoded (most set none)."""
    if not attributes:
        return ()
    encoded = []
    for key, text, type_name, value in attributes.values():
        try:
            encoded.append((key, text, type_name, sup.codec.encode(value)))
        except EncodeError:  # a str, int, float or bool: only a custom codec could refuse
            encoded.append((key, text, type_name, b""))
    return tuple(encoded)


async def _write_until_taken(sup: Supervisor, fn: Callable[[Tx], bool]) -> bool:
    """Write *fn* (a conditional write, safe to repeat), retrying while the journal fails."""
    delay = 0.05
    while True:
        try:
            return await sup.journal.write(fn)
        except JournalError:
            await sup.journal.backoff(delay)
            delay = min(delay * 2, 2.0)


def _journal_fault(error: BaseException | None) -> JournalError | None:
    """The journal error behind *error*, if a journal fault made the attempt fail: the
    error itself, or one it was raised from or while handling (a step that wraps it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, JournalError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _error_payload(sup: Supervisor, error: BaseException) -> bytes:
    return encode_error(sup.codec, error)
