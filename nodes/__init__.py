"""The pack's code. ``core`` is pure torch; the other modules are ComfyUI node classes and the
sampling hooks, imported only when ComfyUI loads the pack (see ``extension.py``)."""
