"""The Change Map Schedule Preview end to end over HTTP: a real ComfyUI server, a prompt POSTed to
``/prompt``, timed until the websocket says ``execution_success`` (the goal: 1024x1024, 50 steps,
<= 0.5 s; docs/performance.md).

The prompt: CheckpointLoaderSimple (the tiny SD1.5-shaped test checkpoint) -> Linear Gradient Change
Map (1024x1024, 45 degrees: a diagonal ramp) -> Change Map Schedule Preview (50 steps, euler). Each
round queues the three modes one after another, so the preview runs every time while the loader and the
map come from ComfyUI's cache, as when a user changes the preview's settings. Prints the median per
scheduler and mode, and the slowest of all.

    COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_preview_http.py [--repeats 5]

The server runs on the CPU (``--cpu``; the preview's work is host work either way), binds 127.0.0.1 on a
free port and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid

import common
from dde_world import locate

MODES = ("step", "denoise", "timestep")


def prompt(checkpoint: str, side: int, steps: int, scheduler: str, mode: str) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "DDE_LinearGradientMap", "inputs": {"width": side, "height": side, "batch_size": 1,
                                                                "angle": 45.0, "offset": 0.0, "curve": "linear",
                                                                "gamma": 1.0, "invert": False}},
        "3": {"class_type": "DDE_SchedulePreview", "inputs": {"model": ["1", 0], "change_map": ["2", 0], "steps": steps,
                                                              "sampler_name": "euler", "scheduler": scheduler,
                                                              "denoise": 1.0, "mode": mode, "invert": False}},
    }


async def timed_runs(port: int, prompts: list[dict]) -> list[float]:
    """Queue each prompt and wait for its ``execution_success``; seconds from POST to that message."""
    import aiohttp

    client_id = uuid.uuid4().hex
    times = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"ws://127.0.0.1:{port}/ws?clientId={client_id}") as ws:
            for p in prompts:
                t0 = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/prompt",
                                        json={"prompt": p, "client_id": client_id}) as r:
                    body = await r.json()
                    if r.status != 200:
                        raise SystemExit(f"/prompt refused ({r.status}): {json.dumps(body)[:2000]}")
                pid = body["prompt_id"]
                while True:
                    msg = await ws.receive(timeout=600)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    if data.get("data", {}).get("prompt_id") != pid:
                        continue
                    if data["type"] == "execution_success":
                        times.append(time.perf_counter() - t0)
                        break
                    if data["type"] in ("execution_error", "execution_interrupted"):
                        raise SystemExit(f"the prompt failed: {json.dumps(data)[:2000]}")
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="rounds (each queues every mode once per scheduler)")
    p.add_argument("--size", type=int, default=1024, help="map side in pixels")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--schedulers", default="normal,sgm_uniform,karras,beta")
    a = p.parse_args()
    path = locate.find_comfyui()
    if not path:
        sys.exit("ComfyUI not found: set COMFYUI_PATH (see README)")
    common.comfy("cpu")   # ComfyUI's own code writes the test checkpoint
    from dde_world.server import ComfyServer
    from dde_world.tiny import write_tiny_models

    schedulers = a.schedulers.split(",")
    models = tempfile.mkdtemp(prefix="dde_bench_models_")
    checkpoint = write_tiny_models(models)["checkpoint"]
    server = ComfyServer(path, models_dir=models)
    try:
        server.start()
        # warm-up: loads the checkpoint and runs every scheduler once (first-call costs are not the preview's)
        asyncio.run(timed_runs(server.port, [prompt(checkpoint, a.size, a.steps, s, m) for s in schedulers for m in MODES]))
        times = {(s, m): [] for s in schedulers for m in MODES}
        for r in range(a.repeats):
            order = [(s, m) for s in schedulers for m in MODES]
            order = order[r % len(order):] + order[: r % len(order)]
            for key, t in zip(order, asyncio.run(timed_runs(server.port, [prompt(checkpoint, a.size, a.steps, *k)
                                                                            for k in order]))):
                times[key].append(t)
    finally:
        server.cleanup()
        import shutil

        shutil.rmtree(models, ignore_errors=True)
    print(f"== Change Map Schedule Preview over HTTP (POST /prompt -> execution_success), {a.size}x{a.size} diagonal "
          f"ramp, {a.steps} steps, euler, {a.repeats} rounds, CPU server ({os.cpu_count()} cores), median ms")
    print("  scheduler  " + "".join(f"{m:>10}" for m in MODES))
    for s in schedulers:
        print(f"  {s:<10} " + "".join(f"{statistics.median(times[(s, m)]) * 1000:>10.0f}" for m in MODES))
    worst = max(statistics.median(v) for v in times.values())
    print(f"  slowest median {worst * 1000:.0f} ms (goal <= 500 ms)")


if __name__ == "__main__":
    main()
