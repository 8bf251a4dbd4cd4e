"""Differential Edit: DiffEdit and Differential Diffusion for ComfyUI.

Import-safe outside ComfyUI: nothing here imports ``comfy``; the node classes are imported when
ComfyUI calls :func:`comfy_entrypoint`.
"""

WEB_DIRECTORY = "./js"

__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]


async def comfy_entrypoint():
    from .nodes.extension import DifferentialEditExtension

    return DifferentialEditExtension()
