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
