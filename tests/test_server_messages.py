"""What a run says on the node when the picture alone would not explain it (over HTTP and the
websocket): a change map of another aspect ratio than the latent, greys a short schedule cannot
render, DiffEdit prompts that never differ, masks that select nothing or everything. Each message is
in the node's UI output (``dde_messages``, shown on the node by the frontend extension) and in the
server log as a warning naming the node and the input."""

from __future__ import annotations

import pytest

from dde_world.server import report
from test_server_reliability import G, _dedit, _dmask

MESSAGES = "dde_messages"


def run(server, g: G) -> dict:
    history = server.run(g.nodes, timeout=300)
    assert history["status"]["status_str"] == "success", history["status"]
    return history


def said(history, node_id) -> list[str]:
    return history["outputs"][node_id][MESSAGES]


def test_a_map_of_another_aspect_ratio_is_not_stretched_silently(server):
    g = G().base()   # the analytic latent is 32 x 32 cells
    tall = g.dk(g.tensor("1,64,32", "ramp"), steps=8)
    square = g.dk(g.tensor("1,64,64", "ramp"), steps=8)
    uniform = g.dk(g.tensor("1,64,32", "half"), steps=8)   # a uniform map looks the same stretched
    for k in (tall, square, uniform):
        g.report(k)
    history, messages = server.run_ws(g.nodes, timeout=300)
    assert history["status"]["status_str"] == "success"
    executed = {m["data"]["node"]: m["data"]["output"] for m in messages if m["type"] == "executed"}
    expected = ("change_map: the map is 32 x 64 px but the latent is 32 x 32 cells, another aspect ratio: it is "
                "stretched to fit (32 cells off).")
    assert [m.split(" Make the map")[0] for m in executed[tall[0]][MESSAGES]] == [expected]
    assert executed[square[0]][MESSAGES] == [] and executed[uniform[0]][MESSAGES] == []
    assert f"Differential KSampler: {expected}" in server.log()


def test_one_step_says_how_many_strengths_it_renders(server):
    g = G().base()
    ramp = g.tensor("1,256,256", "ramp")   # every latent cell grey: (i + 0.5) / 32 on average
    one = g.dk(ramp, steps=1)
    many = g.dk(ramp, steps=32)
    sched = g.add("DDE_SchedulePreview", model=g.model, change_map=ramp, steps=4, sampler_name="euler",
                  scheduler="normal", denoise=1.0, mode="step", invert=False, latent_image=g.latent)
    g.report(one), g.report(many), g.report(mask=[sched, 1])
    history = run(server, g)
    # step mode: a cell of value v gets floor(v N) free steps; N = 1 frees no grey cell at all
    assert said(history, one[0]) == [
        "steps: 1 step renders at most 2 distinct strengths; this map gets 1. 1024 of the map's 1024 grey latent "
        "cells become 0 (kept: 1024) or 1 (changed fully: 0). Use more steps for graded change."]
    assert said(history, many[0]) == []   # 32 steps: one grey cell (v < 1/32) of 1024 is kept
    overlay = history["outputs"][sched]["dde_overlay"]
    # 4 steps: cells (i + 0.5) / 32 get floor(4 v) = 0, 1, 2 or 3 free steps
    assert overlay[0]["label"] == "4 steps render at most 5 distinct strengths; this map gets 4."
    assert said(history, sched) == []


def test_schedule_preview_warns_when_greys_collapse(server):
    g = G().base()
    sched = g.add("DDE_SchedulePreview", model=g.model, change_map=g.tensor("1,256,256", "ramp"), steps=1,
                  sampler_name="euler", scheduler="normal", denoise=1.0, mode="step", invert=False)
    g.report(mask=[sched, 1])
    history = run(server, g)
    assert history["outputs"][sched]["dde_overlay"][0]["label"] == (
        "1 step renders at most 2 distinct strengths; this map gets 1.")
    assert said(history, sched)[0].startswith("steps: 1 step renders at most 2 distinct strengths")
    assert "Change Map Schedule Preview: steps: 1 step renders" in server.log()


def test_denoise_zero_changes_nothing_and_says_nothing_about_steps(server):
    g = G().base()
    zero = g.dk(g.tensor("1,256,256", "ramp"), steps=8, denoise=0.0)
    reported = g.report(zero)
    history = run(server, g)
    assert report(history, reported)["max_abs_diff"] == 0.0   # the input latent (the scene's reference) comes back
    assert said(history, zero[0]) == []   # it used to count every grey cell twice ("2048 of the map's 1024 ...")


def test_schedule_preview_alone_is_a_complete_prompt(server):
    """A preview shows its picture on itself: queued with no node after it, it runs (an output node)."""
    g = G()
    model = [g.add("DDETest_AnalyticModel", family="eps"), 0]
    sched = g.add("DDE_SchedulePreview", model=model, change_map=g.tensor("1,256,256", "ramp"), steps=4,
                  sampler_name="euler", scheduler="normal", denoise=1.0, mode="step", invert=False)
    history = run(server, g)
    assert history["outputs"][sched]["dde_overlay"][0]["label"] == (
        "4 steps render at most 5 distinct strengths; this map gets 4.")


def test_diffedit_with_the_same_prompt_twice_says_there_is_nothing_to_find(server):
    g = G().base()
    g.ref = g.query   # the reference is the query itself
    same = _dmask(g, n=2)
    g.report(mask=[same, 1])
    history = run(server, g)
    lines = said(history, same)
    assert lines[0] == ("mask: the query and the reference give the same prediction everywhere (the same prompt?): "
                        "there is no difference to find.")
    assert len(lines) == 2 and lines[1].startswith("mask: the mask is ")   # empty or full: either way it says so
    assert "DiffEdit Mask: mask: the query and the reference give the same prediction" in server.log()


def test_diffedit_with_different_prompts_says_nothing(server):
    g = G().base()
    mask = _dmask(g, n=2)
    g.report(mask=[mask, 1])
    assert said(run(server, g), mask) == []


@pytest.mark.parametrize("fill, expected", [
    ("zeros", "mask: the mask is empty: nothing is selected, an edit with it returns the picture unchanged."),
    ("ones", "mask: the mask covers the whole picture: an edit with it changes everything.")])
def test_diffedit_edit_says_when_its_mask_is_empty_or_full(server, fill, expected):
    g = G().base()
    edit = _dedit(g, g.tensor("1,256,256", fill))
    g.report(edit)
    history = run(server, g)
    assert said(history, edit[0]) == [expected]
    assert f"DiffEdit Edit: {expected}" in server.log()


def test_diffedit_mask_and_edit_show_progress_in_the_server_console(server):
    g = G().base()
    mask = _dmask(g, n=3)
    edit = _dedit(g, [mask, 1])   # 8 steps: 8 inversion + 8 decode steps
    g.report(edit)
    before = len(server.log())
    run(server, g)
    console = server.log()[before:]
    assert "DiffEdit Mask: 100%" in console and "3/3" in console
    assert "DiffEdit: 100%" in console and "16/16" in console
