"""Limits by design: what a prompt may make the pack allocate or compute, checked without allocating it.

Map sizes from numbers are capped; the Schedule Preview's picture is capped; growing a mask and blurring a map
cost the same at any radius; the distance falloff's cost is bounded by the map's width.
"""

import pytest
import torch


@pytest.fixture(scope="module")
def core(pack):
    from dde_pack.nodes import core

    return core


@pytest.fixture(scope="module")
def Err(pack):
    from dde_pack.nodes.core.errors import InputError

    return InputError


# -- map sizes -------------------------------------------------------------------------------------------

def test_maps_from_numbers_are_capped_before_anything_is_allocated(core, Err):
    canvas = core.construct.canvas
    cap = core.construct.MAX_MAP_PIXELS
    assert cap == 2 ** 28 == 16384 * 16384
    assert canvas(16384, 16384, 1, None) == (1, 16384, 16384)          # the widgets' largest map: allowed
    assert canvas(1024, 1024, 256, None) == (256, 1024, 1024)          # exactly the cap
    with pytest.raises(Err, match=r"^input 'batch_size' expected width x height x batch_size at most 268,435,456 "
                                  r"pixels \(one 16384 x 16384 map, 1 GiB\), got 1024 x 1024 x 257 = 269,484,032 pixels$"):
        canvas(1024, 1024, 257, None)
    with pytest.raises(Err, match=r"got 16384 x 16384 x 4096 = 1,099,511,627,776 pixels"):   # 4 TiB asked for
        canvas(16384, 16384, 4096, None)
    with pytest.raises(Err, match=r"^input 'width' expected width x height x batch_size at most"):
        canvas(16385, 16384, 1, None)                                  # over HTTP ComfyUI's widget check refuses it first
    # a reference sets the size of what already exists: no cap (a 2 x 1 x 1 picture here, to stay small)
    assert canvas(16384, 16384, 4096, torch.zeros(2, 1, 1, 3)) == (2, 1, 1)
