"""A real ComfyUI server with the pack: nodes listed, no import error, the analytic world runs."""

from dde_world.server import PACK_LINK, report


def test_object_info_lists_every_pack_node_from_the_pack(server, comfy):
    info = server.get("/object_info")
    for node_id in comfy.pack_ids:
        assert node_id in info, node_id
        assert info[node_id]["python_module"] == f"custom_nodes.{PACK_LINK}"
        assert info[node_id]["display_name"]


def test_server_log_has_no_import_error_for_the_pack(server):
    log = server.log()
    assert "To see the GUI go to" in log
    startup = log.split("To see the GUI go to")[0]   # loading only: later prompts of other tests may log errors
    bad = [l for l in startup.splitlines() if PACK_LINK in l and ("IMPORT FAILED" in l or "Cannot import" in l or "Error" in l)]
    assert bad == []
    assert "Traceback" not in startup


def test_plain_ksampler_on_the_analytic_world_hits_the_exact_target(server):
    prompt = {
        "1": {"class_type": "DDETest_AnalyticModel", "inputs": {"family": "eps"}},
        "2": {"class_type": "DDETest_AnalyticCondition", "inputs": {"scene": 2, "role": "sharp"}},
        "3": {"class_type": "DDETest_AnalyticCondition", "inputs": {"scene": 2, "role": "unconditional"}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 256, "height": 256, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 3, "steps": 10, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "normal", "positive": ["2", 0],
                                                   "negative": ["3", 0], "latent_image": ["4", 0], "denoise": 1.0}},
        "6": {"class_type": "DDETest_LatentReport", "inputs": {"samples": ["5", 0], "scene": 2, "compare_to": "query"}},
    }
    history, messages = server.run_ws(prompt)
    assert history["status"]["status_str"] == "success"
    rep = report(history, "6")
    assert rep["shape"] == [1, 4, 32, 32]
    assert rep["max_abs_diff"] < 1e-4
    progress = [m for m in messages if m["type"] == "progress"]
    assert progress and progress[-1]["data"]["value"] == progress[-1]["data"]["max"] == 10
