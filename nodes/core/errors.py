"""The one error type the pack raises for bad input.

Every message names the node, the input, what was expected and what was given, so a user
reading ComfyUI's error dialog knows which widget or link to fix.
"""


class NodeInputError(ValueError):
    """Bad input to a node: ``"<node>: input '<input>' expected <expected>, got <got>"``."""

    def __init__(self, node: str, input_name: str, expected: str, got: str):
        self.node = node
        self.input_name = input_name
        self.expected = expected
        self.got = got
        super().__init__(f"{node}: input '{input_name}' expected {expected}, got {got}")


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
