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


# -- grow: one function, the square it always had, the same cost at every radius ---------------------------

def _kornia_grow(maps, pixels):
    """The grow the pack had before (kornia's morphology with a square kernel, geodesic border): the reference."""
    import kornia

    k = torch.ones(2 * abs(pixels) + 1, 2 * abs(pixels) + 1, dtype=maps.dtype)
    op = kornia.morphology.dilation if pixels > 0 else kornia.morphology.erosion
    return op(maps.unsqueeze(1), k, border_type="geodesic")[:, 0]


def test_grow_is_the_old_square_bit_for_bit_on_random_masks_and_grey_maps(core):
    gen = torch.Generator().manual_seed(0)
    checked = 0
    for trial in range(40):
        b = int(torch.randint(1, 3, (1,), generator=gen))
        h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=gen))
        density = float(torch.rand(1, generator=gen))
        binary = (torch.rand(b, h, w, generator=gen) < density).float()
        grey = torch.rand(b, h, w, generator=gen)
        for pixels in (1, -1, 2, -3, 7, -9, 45, -45):   # 45: wider than every test map
            for maps in (binary, grey):
                got = core.maps.grow(maps, pixels)
                assert torch.equal(got, _kornia_grow(maps, pixels)), (trial, b, h, w, pixels)
                checked += 1
        assert torch.equal(core.maps.grow(binary, 0), binary)
    assert checked == 40 * 16


def test_grow_square_is_exact_on_a_dot_and_at_the_edges(core):
    dot = torch.zeros(1, 9, 11)
    dot[0, 4, 5] = 1.0
    grown = core.maps.grow(dot, 2)[0]
    assert torch.equal(grown.nonzero().amin(0), torch.tensor([2, 3])) and torch.equal(grown.nonzero().amax(0),
                                                                                      torch.tensor([6, 7]))
    assert int(grown.sum()) == 25                                     # the 5 x 5 square
    full = torch.ones(1, 9, 11)
    full[0, 0, 0] = 0.0                                               # a corner hole erodes a 3 x 3 square at the corner
    shrunk = core.maps.grow(full, -2)[0]
    assert int((shrunk == 0).sum()) == 9 and bool((shrunk[:3, :3] == 0).all())   # the edge itself is not a hole


def test_diffedit_and_edit_maps_use_the_same_grow(core):
    import inspect

    for module in (core.diffedit_math, core.edits, core.visual):
        assert not hasattr(module, "grow_map") and "kornia.morphology" not in inspect.getsource(module)
    assert core.diffedit_math.grow is core.maps.grow


def test_grow_costs_the_same_at_every_radius(core):
    import time

    m = (torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(1)) < 0.01).float()
    times = {}
    for pixels in (1, 256, -256):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            core.maps.grow(m, pixels)
            best = min(best, time.perf_counter() - start)
        times[pixels] = best
    print("grow at 1024 x 1024, best of 3:", {k: f"{v:.3f} s" for k, v in times.items()})
    # the old square kernel took H W (2 r + 1)^2 operations: about an hour at radius 256 here; now a few passes
    assert times[256] < 1.0 and times[-256] < 1.0


# -- the Schedule Preview's picture --------------------------------------------------------------------

#: the header and legend of a panel of at most PREVIEW_MAX_SIDE px: two text strips and a colour bar
TEXT_ROOM = 2 * (int(2048 // 14 * 1.7) + 2) + (int(2048 // 14 * 1.7) + 2) // 2


def test_schedule_picture_size_is_capped_for_every_grid_without_drawing(core):
    v = core.visual
    assert v.PREVIEW_MAX_SIDE == 2048
    grids = [(1, 1), (32, 32), (1, 2048), (2048, 1), (256, 1), (64, 1), (2048, 2048), (16384, 16384), (3, 100000),
             (100000, 3)]
    for h, w in grids:
        height, width = v.schedule_image_size(h, w)
        assert height <= 2048 + TEXT_ROOM and width <= 2 * 2048 + 128, (h, w, height, width)
    # the worst case: an 8 x 2048 px map is a 1 x 256 latent grid; it was drawn at 256 px per cell,
    # a 65,616 x 640 picture; now 8 px per cell (2048 px tall)
    assert v.schedule_cell(256, 1) == 8 and v.schedule_image_size(256, 1)[0] <= 2048 + TEXT_ROOM
    assert v.schedule_cell(32, 32) == 8 and v.schedule_cell(1, 1) == 256 and v.schedule_cell(4096, 8) == 0


def _schedule(core, h, w, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, n + 1, (h, w), generator=g).float()
    start[start == n] = float("inf")
    effective = core.schedule.free_steps(start, n) / n
    return start, effective


@pytest.mark.parametrize("h,w", [(32, 32), (3, 5), (64, 1), (1, 64), (2100, 3)])
def test_schedule_picture_has_its_size_and_shows_every_cell(core, h, w):
    v = core.visual
    start, effective = _schedule(core, h, w)
    picture = v.schedule_image(start, effective, 10)[0]
    height, width = v.schedule_image_size(h, w)
    assert tuple(picture.shape) == (height, width, 3) and height <= 2048 + TEXT_ROOM
    cell = v.schedule_cell(h, w)
    ph, pw = (h * cell, w * cell) if cell else (2048, max(1, round(w * 2048 / h)))
    # header strip, the panels (ph px tall), then a colour bar of half a strip and a text strip
    strip = next(s for s in range(1, 400) if 2 * s + max(6, s // 2) == picture.shape[0] - ph)
    left = picture[strip: strip + ph, :pw]
    colours = (v.step_colours(start, 10) * 255 + 0.5).floor() / 255      # drawn in 8 bits
    if cell:   # one square of `cell` px per latent cell (its top-left row and column are the grid line)
        centres = left[cell // 2:: cell, cell // 2:: cell]
        rows, cols = torch.arange(h), torch.arange(w)
    else:      # a grid longer than the cap: each pixel shows the cell under its centre
        centres = left
        rows = ((torch.arange(ph) + 0.5) * h / ph).long()
        cols = ((torch.arange(pw) + 0.5) * w / pw).long()
    assert torch.allclose(centres, colours[rows][:, cols], atol=1e-6)
    assert bool((picture[strip: strip + ph, pw: max(pw, 256)] == 1.0).all())   # a narrow panel is padded white


def test_schedule_pictures_of_a_batch_fit_the_pixel_budget(core):
    v = core.visual
    assert v.PREVIEW_MAX_PIXELS == 2 ** 25
    for (h, w), count in (((32, 32), 4096), ((128, 128), 64), ((256, 1), 4096), ((2048, 2048), 16), ((1, 1), 1)):
        shown = v.schedule_images_fitting(count, h, w)
        height, width = v.schedule_image_size(h, w)
        assert 1 <= shown <= count and (shown == 1 or shown * height * width <= v.PREVIEW_MAX_PIXELS)
        assert shown == count or (shown + 1) * height * width > v.PREVIEW_MAX_PIXELS


def test_schedule_pictures_of_one_grid_have_one_size_whatever_their_texts(core):
    """A map that changes nothing ("none changes") and one that does: the same size, so a batch concatenates."""
    v = core.visual
    never = torch.full((32, 32), float("inf"))
    start, effective = _schedule(core, 32, 32)
    a = v.schedule_image(never, torch.zeros(32, 32), 10)
    b = v.schedule_image(start, effective, 10)
    assert a.shape == b.shape == (1, *v.schedule_image_size(32, 32), 3)


# -- denoise-mode planning: bounded work, interruptible ---------------------------------------------------

class Stop(Exception):
    pass


def _family(n):
    """A decreasing schedule family: the level of KSampler(n steps, denoise n / m) for m total steps."""
    return lambda m: 20.0 * (n / m) ** 2


def test_planning_checks_the_interrupt_before_every_call_of_the_exact_fallback(core):
    sch = core.schedule
    n = 50
    level = _family(n)
    sigmas = [20.0 * (1 - i / n) ** 2 for i in range(n)] + [0.0]
    g = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    calls, checks = [], []

    def start(m):
        calls.append(m)
        return level(m)

    def check():
        checks.append(len(calls))
        if len(checks) > 5:
            raise Stop

    with pytest.raises(Stop):     # no closed form: every level comes from the fallback, a Cancel stops it
        sch.start_steps_denoise(g, sigmas, start, check=check)
    assert len(calls) == 5 and checks == [0, 1, 2, 3, 4, 5]   # checked before each call, none after the Cancel

    # with a closed form, only levels within the tolerance of a step's level are recomputed, each after a check
    near_all = lambda totals: torch.tensor([sigmas[min(int(n * n / m), n - 1)] / (1 + sch.SIGMA_RTOL)
                                            for m in totals.tolist()], dtype=torch.float64)   # exactly on a step's level
    calls.clear(), checks.clear()
    with pytest.raises(Stop):
        sch.start_steps_denoise(g, sigmas, start, sigma_starts=near_all, check=check)
    assert len(calls) == 5
    calls.clear(), checks.clear()
    sch.start_steps_denoise(g, sigmas, start, sigma_starts=near_all, trust_closed_form=True, check=check)
    assert calls == [] and checks == []


def test_planning_asks_the_exact_fallback_for_a_bounded_amount_of_work(core):
    sch = core.schedule
    assert sch.EXACT_MAX_TOTAL == 2 ** 22 and sch.EXACT_BUDGET == 2 ** 24
    n = 10_000
    sigmas = [20.0 * (1 - i / n) ** 2 for i in range(n)] + [0.0]
    g = torch.logspace(-8, -0.001, 4000, dtype=torch.float64).to(torch.float32).reshape(1, 40, 100)   # tiny to ~1
    calls = []

    def start(m):
        calls.append(m)
        return 20.0 * max(0.0, 1 - (m - n) / m) ** 2

    # a closed form whose every level sits on a step's level: the worst case for rechecks
    crafted = lambda totals: torch.tensor([sigmas[min(max(n - n * n // max(m, 1), 0), n - 1)] / (1 + sch.SIGMA_RTOL)
                                           for m in totals.tolist()], dtype=torch.float64)
    sch.start_steps_denoise(g, sigmas, start, sigma_starts=crafted)
    assert calls and max(calls) <= sch.EXACT_MAX_TOTAL and sum(calls) <= sch.EXACT_BUDGET
    assert len(calls) < 4000                                        # the budget ran out before every level was asked
    calls.clear()
    sch.start_steps_denoise(g, sigmas, start)                       # no closed form: each level from the fallback
    assert calls and max(calls) == sch.EXACT_MAX_TOTAL              # strengths below N / 2^22 planned as N / 2^22


# -- blur: the same Gaussian, the same cost at every radius ----------------------------------------------

def _kornia_blur(maps, radius):
    """The blur the pack had before (kornia's separable Gaussian, replicate border): the reference."""
    import kornia

    k = 2 * radius + 1
    return kornia.filters.gaussian_blur2d(maps.unsqueeze(1), (k, k), (radius / 2.0, radius / 2.0),
                                          border_type="replicate")[:, 0]


def test_blur_is_kornias_gaussian_and_exactly_zero_beyond_its_radius(core):
    gen = torch.Generator().manual_seed(2)
    for shape in ((1, 5, 7), (2, 37, 300), (1, 130, 129), (3, 64, 1), (1, 1, 1)):
        maps = (torch.rand(*shape, generator=gen) > 0.6).float() * torch.rand(*shape, generator=gen)
        for radius in (1, 2, 5, 16, 17, 40, 200):
            got = core.maps.blur_maps(maps, radius)
            assert got.shape == maps.shape and got.dtype == torch.float32
            assert torch.allclose(got, _kornia_blur(maps, radius), atol=1e-6, rtol=0), (shape, radius)
            if radius <= core.maps.BLUR_DIRECT_RADIUS:   # small radii: kornia's own convolution, as before
                assert torch.equal(got, _kornia_blur(maps, radius))
    dot = torch.zeros(1, 300, 300)
    dot[0, 150, 150] = 1.0
    for radius in (3, 17, 100):
        out = core.maps.blur_maps(dot, radius)[0]
        inside = torch.zeros_like(out, dtype=torch.bool)
        inside[150 - radius: 151 + radius, 150 - radius: 151 + radius] = True
        assert bool((out[~inside] == 0).all()) and bool((out[inside] > 0).all())
        assert float(out.sum()) == pytest.approx(1.0, abs=1e-5)


def test_blur_costs_about_the_same_at_every_radius(core):
    import time

    m = (torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    times = {}
    for radius in (1, 64, 512):
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            core.maps.blur_maps(m, radius)
            best = min(best, time.perf_counter() - start)
        times[radius] = best
    print("blur at 1024 x 1024, best of 2:", {k: f"{v:.3f} s" for k, v in times.items()})
    assert times[512] < 3.0   # kornia's convolution took about 19 s here at radius 512 (and 1-4 s at 64)


# -- distance falloff: exact, its cost bounded by the map, interruptible ------------------------------------

def _shift_min_distance(inside, limit):
    """The distance transform the pack had before (every shift up to the limit): the reference."""
    import math

    b, h, w = inside.shape
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
    inf = torch.tensor(float("inf"))
    above = torch.where(inside, rows, -inf).cummax(dim=1).values
    below = torch.where(inside, rows, inf).flip(1).cummin(dim=1).values.flip(1)
    dy2 = torch.minimum(rows - above, below - rows) ** 2
    reach = min(int(math.ceil(limit)), w - 1)
    padded = torch.nn.functional.pad(dy2, (reach, reach), value=float("inf"))
    d2 = dy2.clone()
    for dx in range(1, reach + 1):
        for start in (reach + dx, reach - dx):
            d2 = torch.minimum(d2, padded[..., start: start + w] + float(dx * dx))
    dist = torch.sqrt(d2)
    return torch.where(dist <= limit, dist, inf)


def test_distance_is_the_old_exact_distance_bit_for_bit_on_random_masks(core):
    gen = torch.Generator().manual_seed(4)
    for trial in range(40):
        b = int(torch.randint(1, 3, (1,), generator=gen))
        h, w = (int(v) for v in torch.randint(1, 90, (2,), generator=gen))
        inside = torch.rand(b, h, w, generator=gen) < float(torch.rand(1, generator=gen)) ** 3
        for limit in (0.0, 1.0, 2.5, 7.0, 64.0, 65.0, 200.0):   # direct shifts up to 64, the envelope beyond
            got = core.construct.distance_to_mask(inside, limit)
            assert torch.equal(got, _shift_min_distance(inside, limit)), (trial, b, h, w, limit)


def test_distance_falloff_cost_is_bounded_by_the_map_and_cancel_stops_it(core):
    import time

    inside = torch.rand(1, 1024, 1024, generator=torch.Generator().manual_seed(5)) < 0.001
    start = time.perf_counter()
    far = core.construct.distance_to_mask(inside, 4096.0)
    took = time.perf_counter() - start
    print(f"distance to a sparse 1024 x 1024 mask, limit 4096: {took:.2f} s")
    assert took < 10.0 and bool(torch.isfinite(far).all())   # every shift up to the width took about 30 s here
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    for limit in (4096.0, 64.0):   # the envelope and the direct shifts both check
        calls.clear()
        with pytest.raises(Stop):
            core.construct.distance_to_mask(inside, limit, check)
        assert len(calls) == 3
