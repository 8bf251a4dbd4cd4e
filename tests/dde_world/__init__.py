"""Test support: the analytic world, the tiny checkpoint, ComfyUI location and a server harness.

Also a ComfyUI custom-node package (the analytic world as nodes) that the test server loads;
the entrypoint is lazy so importing this package never imports ComfyUI.
"""


async def comfy_entrypoint():
    from .testnodes import TestWorldExtension

    return TestWorldExtension()
