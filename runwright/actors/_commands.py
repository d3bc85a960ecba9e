"""What a workflow body and the interpreter say to each other.

A body awaits *requests* (a step call, a sleep, a group, a hook's next
payload, a child's start or result); the interpreter answers with
*outcomes* (:class:`Value` or :class:`Failure`) and asks its caller to carry
out *commands*, each at a position (``cid``) in issue order, except a hook's
disposal and a cancel, which name a position already taken.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "HOOK_ENDED",
    "AttributeCommand",
    "CancelCommand",
    "ChildCommand",
    "ChildResult",
    "Command",
    "Failure",
    "GroupRequest",
    "HookCommand",
    "HookDisposeCommand",
    "HookReceive",
    "MessageReceive",
    "Outcome",
    "PatchCommand",
    "PublishCommand",
    "SleepCommand",
    "SleepRequest",
    "StartChildRequest",
    "StepCommand",
    "StepRequest",
    "Value",
    "describe",
]


@attrs.frozen
class Value:
    value: Any


@attrs.frozen
class Failure:
    error: BaseException


Outcome = Value | Failure


# -- requests: what awaitables yield to the interpreter ---------------------------


class _Yields:
    """Awaiting it hands the object itself to the interpreter, which sends the result back."""

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self)


@attrs.frozen(eq=False)
class _Call(_Yields):
    name: str
    definition: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    encode_args: Callable[[], bytes]


@attrs.frozen(eq=False)
class StepRequest(_Call):
    """A step call; *encode_args* turns the arguments into journal bytes or raises."""


@attrs.frozen(eq=False)
class StartChildRequest(_Call):
    """Start a child run of *definition*; resumes at once with the child's position."""


@attrs.frozen(eq=False)
class SleepRequest(_Yields):
    """A durable sleep: *seconds* from when it is first journaled, or *until* (epoch)."""

    seconds: float | None
    until: float | None


@attrs.frozen(eq=False)
class HookReceive(_Yields):
    """The next payload of hook *cid* (HOOK_ENDED once it is disposed and drained)."""

    cid: int


@attrs.frozen(eq=False)
class MessageReceive(_Yields):
    """The next message sent to the run on *topic*, in the order they were journaled."""

    topic: str


@attrs.frozen(eq=False)
class ChildResult(_Yields):
    """The outcome of the child started at position *cid*."""

    cid: int


#: What a HookReceive gets when its hook is disposed and no payload is left.
HOOK_ENDED = object()


@attrs.frozen(eq=False)
class GroupRequest(_Yields):
    kind: Literal["gather", "race"]
    awaitables: tuple[Awaitable[Any], ...]


# -- commands: what the interpreter asks its caller to carry out -------------------


@attrs.frozen
class StepCommand:
    cid: int
    name: str
    definition: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    encoded_args: bytes

    @property
    def label(self) -> tuple[str, str]:
        return ("step", self.name)


@attrs.frozen
class SleepCommand:
    cid: int
    seconds: float | None
    until: float | None

    @property
    def label(self) -> tuple[str, str]:
        return ("sleep", "sleep")


@attrs.frozen
class HookCommand:
    """Create hook *cid*; a generated token is recorded so that replay reuses it."""

    cid: int
    token: str
    generated: bool

    @property
    def label(self) -> tuple[str, str]:
        return ("hook", "" if self.generated else self.token)


@attrs.frozen
class PublishCommand:
    """Publish *value* (encoded) under *key* for clients of the run, at position *cid*."""

    cid: int
    key: str
    value: bytes

    @property
    def label(self) -> tuple[str, str]:
        return ("publish", self.key)


@attrs.frozen
class AttributeCommand:
    """Set the run's attribute *key* (text form, type name, encoded value) at position *cid*."""

    cid: int
    key: str
    text: str
    type_name: str
    payload: bytes

    @property
    def label(self) -> tuple[str, str]:
        return ("attribute", self.key)


@attrs.frozen
class ChildCommand:
    """Start child run *child_id* (derived from the parent's id and *cid*)."""

    cid: int
    name: str
    child_id: str
    encoded_args: bytes
    #: The child workflow's own ``timeout=``, in seconds.
    timeout: float | None = None

    @property
    def label(self) -> tuple[str, str]:
        return ("child", self.name)


@attrs.frozen
class PatchCommand:
    """Record that the run took patch *patch_id*'s new branch, at position *cid*."""

    cid: int
    patch_id: str

    @property
    def label(self) -> tuple[str, str]:
        return ("patch", self.patch_id)


@attrs.frozen
class HookDisposeCommand:
    """Dispose hook *cid* (not a position of its own: the hook's cid names it)."""

    cid: int


@attrs.frozen
class CancelCommand:
    """The work at position *cid* is no longer awaited: cancel it (not a position of its own).

    *kind* is what sits there: a "step" (its attempt is cancelled wherever it
    runs, and not retried), a "sleep" (its timer is released) or a "child"
    (the child run is cancelled).
    """

    cid: int
    kind: Literal["step", "sleep", "child"]


Command = (
    StepCommand
    | SleepCommand
    | HookCommand
    | HookDisposeCommand
    | ChildCommand
    | CancelCommand
    | PatchCommand
    | PublishCommand
    | AttributeCommand
)


def describe(label: tuple[str, str]) -> str:
    kind, name = label
    if kind == "step":
        return f"step {name!r}"
    if kind == "hook":
        return f"hook {name!r}" if name else "hook (generated token)"
    if kind == "child":
        return f"child workflow {name!r}"
    if kind == "patch":
        return f"rw.patched({name!r})"
    if kind == "publish":
        return f"rw.set_event({name!r})"
    if kind == "attribute":
        return f"rw.set_attribute({name!r})"
    return kind
