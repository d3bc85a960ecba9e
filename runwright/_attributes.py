"""``rw.set_attribute``: a key and a small value a run is shown and found by.

In a workflow body an attribute is a command like ``rw.set_event``: it takes
the next position and is journaled with the body's other commands, so a
replay records nothing twice (and code that stops setting it there is
non-deterministic, as for any command). In a step, attributes are kept with
the attempt and journaled in the write that ends it (its completion, its
failure, or its retry), so an attempt that never ends (its process died) sets
none, and a step's completion is never durable without them. Setting a key
again replaces its value.
"""

from __future__ import annotations

import contextvars
import math

from ._exceptions import RunwrightError
from .actors._interpreter import current_interpreter

__all__ = [
    "MAX_ATTRIBUTE_KEY",
    "MAX_ATTRIBUTE_VALUE",
    "Attribute",
    "attribute",
    "set_attribute",
    "step_attributes",
]

#: The longest attribute key, in characters.
MAX_ATTRIBUTE_KEY = 128
#: The longest attribute value, in characters of its text form.
MAX_ATTRIBUTE_VALUE = 1024

#: One attribute as journaled: key, text form, type name (str/int/float/bool), payload.
Attribute = tuple[str, str, str, bytes]

#: The attributes the running step attempt set, by key: (key, text, type name, value).
#: None outside a step.
step_attributes: contextvars.ContextVar[dict[str, tuple[str, str, str, object]] | None] = (
    contextvars.ContextVar("runwright_step_attributes", default=None)
)


def attribute(key: object, value: object) -> tuple[str, str, str]:
    """*key*, *value*'s text form and its type name; a clear error for bad input."""
    if not isinstance(key, str):
        raise TypeError(f"rw.set_attribute() needs a str key, got {type(key).__name__}")
    if not key:
        raise ValueError("rw.set_attribute() needs a non-empty key")
    if len(key) > MAX_ATTRIBUTE_KEY:
        raise ValueError(
            f"rw.set_attribute(): the key {key[:40]!r}... is {len(key)} characters long; "
            f"at most {MAX_ATTRIBUTE_KEY} are allowed"
        )
    if isinstance(value, bool):
        text, type_name = ("true" if value else "false"), "bool"
    elif isinstance(value, int):
        text, type_name = str(value), "int"
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"rw.set_attribute({key!r}): a float value must be finite")
        text, type_name = repr(value), "float"
    elif isinstance(value, str):
        text, type_name = value, "str"
    else:
        raise TypeError(
            f"rw.set_attribute({key!r}): the value must be a str, int, float or bool, "
            f"got {type(value).__name__}"
        )
    if len(text) > MAX_ATTRIBUTE_VALUE:
        raise ValueError(
            f"rw.set_attribute({key!r}): the value is {len(text)} characters long; at most "
            f"{MAX_ATTRIBUTE_VALUE} are allowed"
        )
    return key, text, type_name


def set_attribute(key: str, value: str | int | float | bool) -> None:
    """Set the attribute *key* of this run to *value* (str, int, float or bool), from a
    workflow body or a step: journaled, shown by ``runs show`` and the web view, and
    filterable there (by its text form: ``customer=c-17``, ``retries=3``, ``vip=true``)."""
    key, text, type_name = attribute(key, value)
    collected = step_attributes.get()
    if collected is not None:
        # A step's attempt: journaled (and encoded) with the write that ends it.
        collected[key] = (key, text, type_name, value)
        return
    interpreter = current_interpreter.get()
    if interpreter is None:
        raise RunwrightError(
            "rw.set_attribute() can only be called inside a workflow body or a step"
        )
    payload = interpreter.info.codec.encode(value)
    interpreter.set_attribute(key, text, type_name, payload)
