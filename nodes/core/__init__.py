"""The pure-torch core: change maps, threshold schedules, blending, DiffEdit statistics, metrics.

Nothing in this package imports ComfyUI; it is tested on its own (``pytest -m core``).
"""
