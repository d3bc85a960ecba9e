"""runwright: durable execution for Python async services.

Workflows are ``async def`` functions decorated with ``@rw.workflow`` that call
``@rw.step`` functions; every step result, timer and event is journaled in
SQLite, so a run survives crashes and restarts and resumes where it stopped.
"""

from ._attributes import set_attribute as set_attribute
from ._context import ChildHandle as ChildHandle
from ._context import Hook as Hook
from ._context import RunInfo as RunInfo
from ._context import StepInfo as StepInfo
from ._context import deprecate_patch as deprecate_patch
from ._context import gather as gather
from ._context import hook as hook
from ._context import now as now
from ._context import patched as patched
from ._context import race as race
from ._context import random as random
from ._context import receive as receive
from ._context import run_info as run_info
from ._context import select as select
from ._context import set_event as set_event
from ._context import sleep as sleep
from ._context import sleep_until as sleep_until
from ._context import start_child as start_child
from ._context import step_info as step_info
from ._context import uuid4 as uuid4
from ._definitions import Backoff as Backoff
from ._definitions import StepDefinition as StepDefinition
from ._definitions import WorkflowDefinition as WorkflowDefinition
from ._definitions import step as step
from ._definitions import workflow as workflow
from ._exceptions import Cancelled as Cancelled
from ._exceptions import ChunkTooLarge as ChunkTooLarge
from ._exceptions import CodecError as CodecError
from ._exceptions import DatabaseLocked as DatabaseLocked
from ._exceptions import DecodeError as DecodeError
from ._exceptions import EncodeError as EncodeError
from ._exceptions import EventNotSet as EventNotSet
from ._exceptions import EventTimeout as EventTimeout
from ._exceptions import FatalError as FatalError
from ._exceptions import HookConflict as HookConflict
from ._exceptions import HookNotFound as HookNotFound
from ._exceptions import JournalCorrupt as JournalCorrupt
from ._exceptions import JournalError as JournalError
from ._exceptions import JournalFull as JournalFull
from ._exceptions import JournalReadOnly as JournalReadOnly
from ._exceptions import JournalUnavailable as JournalUnavailable
from ._exceptions import KeyConflict as KeyConflict
from ._exceptions import NonDeterminismError as NonDeterminismError
from ._exceptions import NotARunwrightDatabase as NotARunwrightDatabase
from ._exceptions import NotInStepError as NotInStepError
from ._exceptions import NotInWorkflowError as NotInWorkflowError
from ._exceptions import PayloadFileCorrupt as PayloadFileCorrupt
from ._exceptions import ReceiveTimeout as ReceiveTimeout
from ._exceptions import RetryableError as RetryableError
from ._exceptions import RunCancelled as RunCancelled
from ._exceptions import RunEnded as RunEnded
from ._exceptions import RunFailed as RunFailed
from ._exceptions import RunNotFound as RunNotFound
from ._exceptions import RunStuck as RunStuck
from ._exceptions import RunTimeout as RunTimeout
from ._exceptions import RunwrightError as RunwrightError
from ._exceptions import ScheduleNotFound as ScheduleNotFound
from ._exceptions import SchemaVersionError as SchemaVersionError
from ._exceptions import StepFailed as StepFailed
from ._exceptions import StepTimeout as StepTimeout
from ._exceptions import StreamClosed as StreamClosed
from ._exceptions import StreamInterrupted as StreamInterrupted
from ._exceptions import UnknownWorkflowError as UnknownWorkflowError
from ._runtime import RunHandle as RunHandle
from ._runtime import RunProblem as RunProblem
from ._runtime import RunSummary as RunSummary
from ._runtime import Runtime as Runtime
from ._runtime import run as run
from ._schedule import Schedule as Schedule
from ._schedule import schedule as schedule
from ._scheduler import ScheduleInfo as ScheduleInfo
from ._streaming import Writable as Writable
from ._streaming import readable as readable
from ._streaming import writable as writable
from .journal._codec import Codec as Codec
from .journal._codec import DefaultCodec as DefaultCodec
from .journal._states import RunStatus as RunStatus
from .streams._chunks import MAX_CHUNK_BYTES as MAX_CHUNK_BYTES
from .streams._chunks import Chunk as Chunk
from .streams._chunks import StreamInfo as StreamInfo
from .streams._hub import StreamReader as StreamReader

__version__ = "0.1.0"

__all__ = [
    "MAX_CHUNK_BYTES",
    "Backoff",
    "Cancelled",
    "ChildHandle",
    "Chunk",
    "ChunkTooLarge",
    "Codec",
    "CodecError",
    "DatabaseLocked",
    "DecodeError",
    "DefaultCodec",
    "EncodeError",
    "EventNotSet",
    "EventTimeout",
    "FatalError",
    "Hook",
    "HookConflict",
    "HookNotFound",
    "JournalCorrupt",
    "JournalError",
    "JournalFull",
    "JournalReadOnly",
    "JournalUnavailable",
    "KeyConflict",
    "NonDeterminismError",
    "NotARunwrightDatabase",
    "NotInStepError",
    "NotInWorkflowError",
    "PayloadFileCorrupt",
    "ReceiveTimeout",
    "RetryableError",
    "RunCancelled",
    "RunEnded",
    "RunFailed",
    "RunHandle",
    "RunInfo",
    "RunNotFound",
    "RunProblem",
    "RunStatus",
    "RunStuck",
    "RunSummary",
    "RunTimeout",
    "Runtime",
    "RunwrightError",
    "Schedule",
    "ScheduleInfo",
    "ScheduleNotFound",
    "SchemaVersionError",
    "StepDefinition",
    "StepFailed",
    "StepInfo",
    "StepTimeout",
    "StreamClosed",
    "StreamInfo",
    "StreamInterrupted",
    "StreamReader",
    "UnknownWorkflowError",
    "WorkflowDefinition",
    "Writable",
    "deprecate_patch",
    "gather",
    "hook",
    "now",
    "patched",
    "race",
    "random",
    "readable",
    "receive",
    "run",
    "run_info",
    "schedule",
    "select",
    "set_attribute",
    "set_event",
    "sleep",
    "sleep_until",
    "start_child",
    "step",
    "step_info",
    "uuid4",
    "workflow",
    "writable",
]
