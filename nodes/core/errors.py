"""The error type the pack raises for bad input.

The core raises :class:`InputError` about an *input* ("input 'change_map' expected …, got …"); the
node layer adds the node's display name once, at its boundary (``nodes/naming.py``), so a user reading
ComfyUI's error dialog sees "<node>: input '<input>' expected <expected>, got <got>" and knows which
widget or link to fix.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: ``"[<node>: ]input '<input>' expected <expected>, got <got>"``."""

    def __init__(self, input_name: str, expected: str, got: str, node: str | None = None):
        self.input_name = input_name
        self.expected = expected
        self.got = got
        self.node = node
        prefix = f"{node}: " if node else ""
        super().__init__(f"{prefix}input '{input_name}' expected {expected}, got {got}")

    def at(self, node: str) -> "InputError":
        """The same error, naming ``node`` (unless it already names one)."""
        return self if self.node else InputError(self.input_name, self.expected, self.got, node)


def describe(value) -> str:
    """Short human description of a value for error messages (shape and dtype for tensors)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        dtype = str(getattr(value, "dtype", "")).replace("torch.", "")
        return f"tensor of shape {tuple(shape)} ({dtype})"
    if value is None:
        return "nothing (None)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
