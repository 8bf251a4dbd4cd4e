"""Probes shared by the sampler tests: level maps, a recording mask function, Spearman's rho, a function's locals."""

import sys

import torch

LEVELS = [round(0.1 * i, 1) for i in range(11)]


def level_map(h=32, w=32, scale=8):
    """Column c of the latent grid has value LEVELS[c % 11]; upscaled so area averaging is exact."""
    cols = torch.tensor([LEVELS[c % 11] for c in range(w)], dtype=torch.float32)
    lat = cols.view(1, 1, w).expand(1, h, w)
    return lat.repeat_interleave(scale, 1).repeat_interleave(scale, 2).contiguous()


def columns(level):
    return [c for c in range(32) if LEVELS[c % 11] == level]


def spearman(x, y):
    def ranks(v):
        v = torch.as_tensor(v, dtype=torch.float64)
        order = torch.argsort(v)
        r = torch.empty_like(v)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for val in torch.unique(v):  # average ranks for ties
            idx = v == val
            r[idx] = r[idx].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / torch.sqrt((rx * rx).sum() * (ry * ry).sum()))


def recording(model):
    """A clone with a denoise-mask function installed first that records every step mask it is given."""
    rec = []
    m = model.clone()

    def record(sigma, mask, extra_options):
        rec.append((sigma.detach().clone(), mask.detach().clone()))
        return mask

    m.set_model_denoise_mask_function(record)
    return m, rec


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two masks (values > 0.5 count as inside); 1 when both are empty."""
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 1.0


#: ops that copy a tensor's value into a Python scalar (a device sync on a GPU). The mode sees the outermost op
#: only: ``.item()`` / ``float(t)`` / ``bool(t)`` arrive as ``item`` / ``is_nonzero`` under inference mode and as
#: ``_local_scalar_dense`` outside it, so each read is counted once either way.
SCALAR_READS = ("aten._local_scalar_dense.default", "aten.item.default", "aten.is_nonzero.default")


def host_reads(fn) -> tuple[list[str], list[str]]:
    """Run ``fn()`` recording every torch op: ``(ops, reads)``, ``reads`` the ops that copy a value back to the
    host (:data:`SCALAR_READS`). Reading a CPU tensor's memory without an op (``.tolist()``, ``.numpy()``) is not
    seen; on a GPU those start with a device copy, which is."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return ops, [op for op in ops if op in SCALAR_READS]


def returned_locals(function_name: str, call):
    """``(call(), locals)``: the local variables of the (last) Python function named ``function_name`` as it returned.

    The outermost call of that name returns last, so its locals are the ones kept (e.g. a node's ``execute``
    rather than a nested one); the function's code is not touched.
    """
    seen: dict = {}

    def profile(frame, event, arg):
        if event == "return" and frame.f_code.co_name == function_name:
            seen.clear()
            seen.update(frame.f_locals)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        result = call()
    finally:
        sys.setprofile(previous)
    assert seen, f"{function_name} never returned"
    return result, seen
