"""Every pack node, run with its default widget values: outputs as declared, inputs never mutated,
no network connection and no file written outside ComfyUI's output and temp folders."""

import copy
import os
import socket
import sys

import pytest
import torch

_EVENTS = []
_RECORDING = [False]
_WATCHED = ("socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo", "urllib.Request", "http.client.connect",
            "open", "os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "shutil.copyfile", "os.truncate")


def _audit(event, args):
    if _RECORDING[0] and event in _WATCHED:
        _EVENTS.append((event, args))


sys.addaudithook(_audit)


def _writes(event, args):
    if event != "open":
        return True
    path, mode, flags = (list(args) + [None, None, None])[:3]
    if isinstance(mode, str):
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))


@pytest.fixture(scope="module")
def values(comfy, cw, world):
    from dde_world.analytic import AnalyticVAE
    from dde_world.probes import level_map

    return {
        "MODEL": lambda: cw.make_model(world, "eps"),
        "CONDITIONING": lambda: cw.conditioning(world, world.query_id(0)),
        "LATENT": lambda: {"samples": world.latent(0)},
        "MASK": lambda: level_map(),
        "IMAGE": lambda: world.decode(world.latent(0)),
        "VAE": lambda: AnalyticVAE(world),
        "DDE_EDIT_CONCEPTS": lambda: comfy.module("nodes.several_edits").chain(
            None, cw.conditioning(world, world.query_id(0)), cw.conditioning(world, world.reference_id(0))),
    }


def default_kwargs(cls, values):
    kwargs = {}
    for inp in cls.GET_SCHEMA().inputs:
        t = inp.get_io_type()
        default = getattr(inp, "default", None)
        if default is not None:
            kwargs[inp.id] = default
        elif t == "COMBO":
            kwargs[inp.id] = inp.options[0]
        elif t in values and not inp.optional:
            kwargs[inp.id] = values[t]()
        elif not inp.optional:
            raise AssertionError(f"no test value for required input {inp.id} ({t})")
    return kwargs


def snapshot(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    if hasattr(obj, "model_options"):   # a ModelPatcher: its options and wrappers must not change
        return ("patcher", copy.copy(obj.model_options), {k: {kk: list(vv) for kk, vv in v.items()} for k, v in obj.wrappers.items()})
    return obj


def same(a, b):
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(
            torch.nan_to_num(a), torch.nan_to_num(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a is b or a == b


def test_every_node_runs_leaves_inputs_alone_and_stays_in_its_folders(comfy, values):
    import folder_paths

    allowed = [os.path.realpath(folder_paths.get_temp_directory()), os.path.realpath(folder_paths.get_output_directory())]
    problems = []
    for node_id in comfy.pack_ids:
        cls = comfy.node(node_id)
        kwargs = default_kwargs(cls, values)
        before = {k: snapshot(v) for k, v in kwargs.items()}
        patchers = {k: v for k, v in kwargs.items() if hasattr(v, "model_options")}
        _EVENTS.clear()
        _RECORDING[0] = True
        try:
            out = cls.execute(**kwargs)
        finally:
            _RECORDING[0] = False
        declared = len(cls.GET_SCHEMA().outputs)
        if len(out.args) != declared:
            problems.append(f"{node_id}: {len(out.args)} outputs, declared {declared}")
        for k, v in kwargs.items():
            now = snapshot(v)
            if k in patchers:
                ok = before[k][1].keys() == now[1].keys() and before[k][2] == now[2]
            else:
                ok = same(before[k], now)
            if not ok:
                problems.append(f"{node_id}: input {k} was modified")
        for event, args in _EVENTS:
            if event.startswith(("socket", "urllib", "http")):
                problems.append(f"{node_id}: network {event} {args}")
            elif _writes(event, args):
                path = os.path.realpath(str(args[0]))
                if not path.endswith(".pyc") and not any(path.startswith(a + os.sep) or path == a for a in allowed):
                    problems.append(f"{node_id}: {event} {path}")
    assert problems == []


def test_the_audit_hook_sees_what_it_should(tmp_path):
    """The probe itself: a write outside the folders and a connection are recorded."""
    _EVENTS.clear()
    _RECORDING[0] = True
    try:
        (tmp_path / "x.txt").write_text("x")
        s = socket.socket()
        try:
            s.settimeout(0.2)
            s.connect_ex(("127.0.0.1", 9))
        finally:
            s.close()
    finally:
        _RECORDING[0] = False
    kinds = [e for e, a in _EVENTS if e == "socket.connect" or (e == "open" and _writes(e, a))]
    assert "socket.connect" in kinds and "open" in kinds
