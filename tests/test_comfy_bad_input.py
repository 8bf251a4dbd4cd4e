"""Bad input on real nodes: each one an error naming the node and the input, or a documented result.

Grey and two-channel pictures, NaN latent noise masks, latents of the wrong channel count, deeply nested
calibration text, pictures of another aspect ratio than the latent, and the example pictures' copy into
ComfyUI's input folder when a copy fails half-way.
"""

import os

import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def Err(comfy):
    return comfy.module("nodes.core.errors").InputError


def saved_pngs(ui) -> list:
    """The pictures a node's overlay payload saved in ComfyUI's temp folder, read back as arrays."""
    import folder_paths

    out = []
    for entry in ui["dde_overlay"]:
        for key in ("map", "base"):
            if entry[key] is not None:
                with Image.open(os.path.join(folder_paths.get_temp_directory(), entry[key]["filename"])) as im:
                    out.append(np.asarray(im))
    return out


def _diffedit_mask(comfy, cw, world, image, grow=0):
    return comfy.run_node("DDE_DiffEditMask", model=cw.make_model(world, "eps"),
                          query=cw.conditioning(world, world.query_id(0)), latent={"samples": world.latent(0)},
                          reference=cw.conditioning(world, world.reference_id(0)), n=2, grow=grow, image=image)


# -- IMAGE channels: 1 = grey, 3 = RGB, 4 = RGBA, anything else an error naming the input ----------------

def test_grey_pictures_work_in_every_picture_node_and_are_shown(comfy, cw, world):
    rgb = world.decode(world.latent(0)).float().clamp(0, 1)
    grey = rgb.mean(-1, keepdim=True)
    out = _diffedit_mask(comfy, cw, world, grey)
    heat, mask, preview = out.args[:3]
    assert heat.shape == mask.shape == (1, 256, 256) and preview.shape == (1, 256, 256, 3)
    # the preview is the heat over the grey picture: where the heat is 0 every channel is the grey value
    cold = heat[0] == 0
    assert bool(cold.any()) and torch.equal(preview[0][cold], grey[0][cold].expand(-1, 3))
    pictures = saved_pngs(out.ui)
    assert any(p.ndim == 2 and p.shape == (256, 256) for p in pictures)   # the grey picture, saved as grey
    assert torch.equal(_diffedit_mask(comfy, cw, world, grey.expand(-1, -1, -1, 3))[1], mask)   # = its RGB twin

    after = grey.clone()
    after[:, 64:128, 64:128] = (grey[:, 64:128, 64:128] < 0.5).float()   # black <-> white: a change everywhere there
    edit = comfy.run_node("DDE_ChangeMapFromEdit", before=grey, after=after)
    twin = comfy.run_node("DDE_ChangeMapFromEdit", before=grey.expand(-1, -1, -1, 3), after=after.expand(-1, -1, -1, 3))
    assert torch.equal(edit.args[0], twin.args[0]) and float(edit.args[1][0, 65:127, 65:127].min()) == 1.0
    assert any(p.ndim == 2 for p in saved_pngs(edit.ui))

    metrics = comfy.run_node("DDE_ChangeMapAdherence", original=grey, result=after, change_map=edit.args[0])
    twin = comfy.run_node("DDE_ChangeMapAdherence", original=grey.expand(-1, -1, -1, 3),
                          result=after.expand(-1, -1, -1, 3), change_map=edit.args[0])
    assert metrics.args[:7] == twin.args[:7] and metrics.args[0] > 0.9
    assert any(p.ndim == 2 for p in saved_pngs(metrics.ui))


@pytest.mark.parametrize("channels", [2, 5])
def test_pictures_of_other_channel_counts_are_an_error_naming_the_input(comfy, cw, world, Err, channels):
    bad = torch.full((1, 256, 256, channels), 0.5)
    ok = torch.full((1, 256, 256, 3), 0.5)
    expected = "expected an IMAGE with 1 (grey), 3 (RGB) or 4 (RGBA) channels, got %d channels" % channels
    with pytest.raises(Err, match=r"^DiffEdit Mask: input 'image' " + expected.replace("(", r"\(").replace(")", r"\)")):
        _diffedit_mask(comfy, cw, world, bad)
    cases = [("DDE_ChangeMapFromEdit", "Change Map from Edit", "after", dict(before=ok, after=bad)),
             ("DDE_ChangeMapAdherence", "Change Map Adherence", "original",
              dict(original=bad, result=bad, change_map=torch.ones(1, 8, 8))),
             ("DDE_CompositeByChangeMap", "Composite Original by Change Map", "original",
              dict(original=bad, edited=bad, change_map=torch.ones(1, 8, 8))),
             ("DDE_ImageChannelMap", "Change Map from Image", "image", dict(image=bad)),
             ("DDE_DepthChangeMap", "Change Map from Depth", "depth", dict(depth=bad))]
    for node_id, name, input_name, inputs in cases:
        with pytest.raises(Err, match=rf"^{name}: input '{input_name}' expected an IMAGE with 1 \(grey\), 3"):
            comfy.run_node(node_id, **inputs)


# -- latents: a NaN noise mask, the wrong channel count ------------------------------------------------

def _dk(comfy, cw, world, latent, node="DDE_DifferentialKSampler", model=None, **extra):
    model = model or cw.make_model(world, "eps")
    inputs = dict(model=model, steps=4, cfg=1.0, sampler_name="euler", scheduler="normal",
                  positive=cw.conditioning(world, world.graded_id(0)), negative=cw.conditioning(world, None),
                  latent_image=latent, change_map=torch.full((1, 256, 256), 0.5), **extra)
    if node == "DDE_DifferentialKSamplerAdvanced":
        inputs.update(add_noise="enable", return_with_leftover_noise="disable")
    return comfy.run_node(node, **inputs)


@pytest.mark.parametrize("where", ["everywhere", "one cell"])
def test_a_nan_latent_noise_mask_is_an_error_naming_latent_image(comfy, cw, world, Err, where):
    mask = torch.ones(1, 32, 32)
    if where == "everywhere":
        mask[:] = float("nan")
    else:
        mask[0, 3, 4] = float("nan")
    latent = {"samples": world.latent(0), "noise_mask": mask}
    for node, name in (("DDE_DifferentialKSampler", "Differential KSampler"),
                       ("DDE_DifferentialKSamplerAdvanced", r"Differential KSampler \(Advanced\)")):
        with pytest.raises(Err, match=rf"^{name}: input 'latent_image' expected a noise_mask of finite values in 0..1, "
                                      r"got a noise_mask with NaN or infinite values"):
            _dk(comfy, cw, world, latent, node)
    # the same latent through Apply Change Map to Model and ComfyUI's own KSampler
    patched = comfy.run_node("DDE_ApplyChangeMap", model=cw.make_model(world, "eps"),
                             change_map=torch.full((1, 256, 256), 0.5))[0]
    with pytest.raises(Err, match=r"^Apply Change Map to Model: input 'latent_image' expected a noise_mask of finite"):
        comfy.nodes.KSampler().sample(patched, 0, 4, 1.0, "euler", "normal", cw.conditioning(world, world.graded_id(0)),
                                      cw.conditioning(world, None), latent)
    # a finite noise mask still works, and is what it was: 0 keeps, 1 lets the map act
    half = torch.zeros(1, 32, 32)
    half[:, :, 16:] = 1.0
    out = _dk(comfy, cw, world, {"samples": world.latent(0), "noise_mask": half})[0]["samples"]
    assert torch.equal(out[..., :16], world.latent(0)[..., :16]) and not torch.equal(out, world.latent(0))


def test_a_latent_of_the_wrong_channel_count_is_an_error_naming_latent_image(comfy, cw, world, Err):
    wrong = {"samples": torch.randn(1, 16, 32, 32, generator=torch.Generator().manual_seed(0))}
    for node, name in (("DDE_DifferentialKSampler", "Differential KSampler"),
                       ("DDE_DifferentialKSamplerAdvanced", r"Differential KSampler \(Advanced\)")):
        with pytest.raises(Err, match=rf"^{name}: input 'latent_image' expected an image latent of this model "
                                      r"\(4 channels, 4-D\), got shape \(1, 16, 32, 32\)"):
            _dk(comfy, cw, world, wrong, node)
    # the same check DiffEdit Mask makes (one function), with its own input's name
    with pytest.raises(Err, match=r"^DiffEdit Mask: input 'latent' expected an image latent of this model \(4 channels"):
        comfy.run_node("DDE_DiffEditMask", model=cw.make_model(world, "eps"), query=cw.conditioning(world, 0),
                       latent=wrong, n=1)
    # an empty latent of another channel count is what ComfyUI fixes (EmptyLatentImage on an SD3-like model): still fine
    assert _dk(comfy, cw, world, {"samples": torch.zeros(1, 16, 32, 32)})[0]["samples"].shape == (1, 4, 32, 32)


# -- smaller ones: wording, nesting, a stretched picture ---------------------------------------------

def test_one_latent_and_two_masks_says_one_map(comfy, cw, world, Err):
    with pytest.raises(Err) as caught:
        comfy.run_node("DDE_DiffEditEdit", model=cw.make_model(world, "eps"), query=cw.conditioning(world, 0),
                       latent={"samples": world.latent(0)}, mask=torch.ones(2, 256, 256), steps=2)
    assert str(caught.value) == ("DiffEdit Edit: input 'mask' expected 1 map (the latent batch holds one image), "
                                 "got 2 maps")


def test_deeply_nested_calibration_is_an_error_naming_the_input(comfy, Err):
    picture = torch.full((1, 16, 16, 3), 0.5)
    for depth in (5, 100_000):
        text = "[" * depth + "]" * depth
        with pytest.raises(Err, match=r"^Change Map Adherence: input 'calibration' expected"):
            comfy.run_node("DDE_ChangeMapAdherence", original=picture, result=picture, change_map=torch.ones(1, 4, 4),
                           calibration=text)


def test_diffedit_mask_says_when_it_stretches_its_heat_onto_a_picture_of_another_aspect(comfy, cw, world):
    picture = world.decode(world.latent(0)).float().clamp(0, 1)
    wide = torch.nn.functional.interpolate(picture.permute(0, 3, 1, 2), size=(128, 256)).permute(0, 2, 3, 1)
    lines = _diffedit_mask(comfy, cw, world, wide).ui["dde_messages"]
    stretched = [m for m in lines if m.startswith("image: the picture is 256 x 128 px but the latent is 32 x 32 cells")]
    assert len(stretched) == 1 and "the heat and the mask are stretched onto it" in stretched[0], lines
    same_aspect = picture[:, :128, :128].contiguous()
    assert not [m for m in _diffedit_mask(comfy, cw, world, same_aspect).ui["dde_messages"] if "stretched" in m]
    assert not [m for m in _diffedit_mask(comfy, cw, world, None).ui["dde_messages"] if "stretched" in m]


# -- map sizes: the cap the core enforces is the one the tooltips and help pages state ------------------

def test_the_map_size_cap_is_the_one_the_tooltip_and_help_pages_state(comfy, Err):
    from dde_world.locate import PACK_ROOT

    cap = f"{comfy.module('nodes.core.construct').MAX_MAP_PIXELS:,}"
    for node_id in ("DDE_LinearGradientMap", "DDE_RadialGradientMap", "DDE_AngularGradientMap"):
        inputs = {i.id: i for i in comfy.node(node_id).GET_SCHEMA().inputs}
        assert f"at most {cap} pixels" in inputs["batch_size"].tooltip
        with open(os.path.join(PACK_ROOT, "js", "docs", node_id, "en.md"), encoding="utf-8") as f:
            assert f"at most {cap} pixels in all" in f.read(), node_id
    with pytest.raises(Err, match=rf"^Radial Gradient Change Map: input 'batch_size' expected width x height x "
                                  rf"batch_size at most {cap} pixels"):
        comfy.run_node("DDE_RadialGradientMap", width=16384, height=16384, batch_size=4096)


# -- the example pictures in ComfyUI's input folder -----------------------------------------------------

@pytest.fixture(scope="module")
def examples(comfy):
    return comfy.module("nodes.examples")


def _ours(examples) -> dict:
    out = {}
    for name in examples.example_inputs():
        with open(os.path.join(examples.INPUTS, name), "rb") as f:
            out[name] = f.read()
    return out


def _listing(folder) -> dict:
    """Every entry of ``folder`` (hidden ones too): its bytes, 'link -> target' or 'folder'."""
    out = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.islink(path):
            out[name] = "link -> " + os.readlink(path)
        elif os.path.isdir(path):
            out[name] = "folder"
        else:
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def test_example_pictures_are_copied_and_nothing_of_the_users_is_replaced_or_followed(examples, tmp_path):
    ours = _ours(examples)
    assert sorted(ours) == ["example_depth.png", "example_edited.png", "example_mask.png", "example_scene.png"]
    fresh = tmp_path / "fresh"
    assert examples.install_example_inputs(str(fresh)) == sorted(ours)
    assert _listing(fresh) == ours                                     # and no temporary file left behind
    assert examples.install_example_inputs(str(fresh)) == []          # complete copies: nothing to do

    users = tmp_path / "users"
    users.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(ours["example_scene.png"][:100])              # a truncated copy, but behind a symlink
    (users / "example_scene.png").symlink_to(outside)
    (users / "example_depth.png").write_bytes(b"my own picture")      # not a beginning of ours
    (users / "example_mask.png").write_bytes(ours["example_mask.png"] + b"more")   # longer than ours
    (users / "example_edited.png").mkdir()                            # a folder of that name
    before = _listing(users)
    assert examples.install_example_inputs(str(users)) == []
    assert _listing(users) == before and outside.read_bytes() == ours["example_scene.png"][:100]
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    (dangling / "example_mask.png").symlink_to(tmp_path / "nowhere.png")
    assert "example_mask.png" not in examples.install_example_inputs(str(dangling))
    assert os.path.islink(dangling / "example_mask.png") and not (tmp_path / "nowhere.png").exists()


def test_a_truncated_copy_of_an_example_picture_is_repaired(examples, tmp_path, caplog):
    ours = _ours(examples)
    (tmp_path / "example_edited.png").write_bytes(ours["example_edited.png"][:1000])   # a copy cut short (disk full)
    (tmp_path / "example_mask.png").write_bytes(b"")                                 # created, nothing written
    with caplog.at_level("WARNING", logger="differential_edit"):
        assert examples.install_example_inputs(str(tmp_path)) == sorted(ours)
    assert _listing(tmp_path) == ours
    assert "example_edited.png in %s was a truncated copy of the example picture: repaired" % tmp_path in caplog.text


_FULL_DISK = """
import importlib.util, json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # past the limit a write fails with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
spec = importlib.util.spec_from_file_location("examples", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(module.install_example_inputs(sys.argv[3])))
"""


def test_a_copy_failing_half_way_leaves_no_partial_picture_and_does_not_stop_the_others(examples, tmp_path):
    import json
    import subprocess
    import sys

    ours = _ours(examples)
    run = subprocess.run([sys.executable, "-c", _FULL_DISK, examples.__file__, "300", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    small = sorted(n for n, data in ours.items() if len(data) <= 300)
    assert small == ["example_depth.png", "example_mask.png"]        # edited (5,516 bytes) fails between them
    assert json.loads(run.stdout) == small
    assert _listing(tmp_path) == {n: ours[n] for n in small}          # no partial picture, no temporary file
    assert "could not copy the example pictures example_edited.png" in run.stderr
    assert "example_scene.png" in run.stderr
    assert examples.install_example_inputs(str(tmp_path)) == ["example_edited.png", "example_scene.png"]   # space again
    assert _listing(tmp_path) == ours


# -- the Schedule Preview of a narrow map, of a large batch -----------------------------------------------

def test_schedule_preview_of_a_narrow_map_is_capped(comfy, cw, world):
    narrow = comfy.run_node("DDE_LinearGradientMap", width=8, height=2048, angle=90.0)[0]   # a 1 x 256 latent grid
    picture, effective, start = comfy.run_node("DDE_SchedulePreview", model=cw.make_model(world, "eps"),
                                               change_map=narrow, steps=10, sampler_name="euler", scheduler="normal",
                                               mode="step").args
    assert effective.shape == (1, 256, 1)
    assert picture.shape[0] == 1 and picture.shape[1] <= 2048 + 400 and picture.shape[2] == 2 * 256 + 4   # was 65,616 x 640


def test_schedule_preview_of_a_large_batch_draws_the_first_maps_and_says_so(comfy, cw, world, monkeypatch):
    visual = comfy.module("nodes.core.visual")
    one = visual.schedule_image_size(32, 32)
    monkeypatch.setattr(visual, "PREVIEW_MAX_PIXELS", 3 * one[0] * one[1])   # room for three 32 x 32 pictures
    maps = torch.linspace(0, 1, 5).view(5, 1, 1).expand(5, 256, 256).contiguous()
    out = comfy.run_node("DDE_SchedulePreview", model=cw.make_model(world, "eps"), change_map=maps, steps=10,
                         sampler_name="euler", scheduler="normal", mode="step")
    picture, effective, start = out.args
    assert picture.shape[0] == 3 and effective.shape == start.shape == (5, 32, 32)
    assert effective[:, 0, 0].tolist() == pytest.approx([0.0, 0.2, 0.5, 0.7, 1.0])
    assert [m for m in out.ui["dde_messages"] if m.startswith("preview: the pictures show the first 3 of 5 maps")]
    monkeypatch.undo()
    out = comfy.run_node("DDE_SchedulePreview", model=cw.make_model(world, "eps"), change_map=maps, steps=10,
                         sampler_name="euler", scheduler="normal", mode="step")
    assert out.args[0].shape[0] == 5 and not [m for m in out.ui["dde_messages"] if m.startswith("preview:")]


def test_the_preview_caps_are_the_ones_its_help_page_and_tooltip_state(comfy):
    from dde_world.locate import PACK_ROOT

    visual = comfy.module("nodes.core.visual")
    with open(os.path.join(PACK_ROOT, "js", "docs", "DDE_SchedulePreview", "en.md"), encoding="utf-8") as f:
        page = " ".join(f.read().split())
    tooltip = " ".join(o.tooltip for o in comfy.node("DDE_SchedulePreview").GET_SCHEMA().outputs
                       if o.display_name == "preview")
    for text in (page, tooltip):
        assert f"at most {visual.PREVIEW_MAX_SIDE} px" in text and f"at most {visual.PREVIEW_MAX_PIXELS:,} pixels" in text


def test_the_planning_limits_are_the_ones_the_help_page_states(comfy):
    from dde_world.locate import PACK_ROOT

    sch = comfy.module("nodes.core.schedule")
    with open(os.path.join(PACK_ROOT, "js", "docs", "DDE_DifferentialKSampler", "en.md"), encoding="utf-8") as f:
        page = " ".join(f.read().split())
    assert f"at most {sch.EXACT_MAX_TOTAL:,} steps and {sch.EXACT_BUDGET:,} levels in all" in page
    assert f"below `steps / {sch.EXACT_MAX_TOTAL:,}`" in page and "4·10⁻⁶" in page
    assert sch.LEVEL_CHECK_RTOL == 4e-6
