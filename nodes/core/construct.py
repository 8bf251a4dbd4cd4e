"""Building and reshaping change maps: gradients, maps from masks, images and DiffEdit heat, operations.

Every function returns float32 ``(B,H,W)`` maps in 0..1, white (1) = change, and never modifies
its inputs. Bad input raises :class:`InputError` naming the input.

Geometry. Pixel ``(row y, column x)`` is sampled at its centre ``(x + 0.5, y + 0.5)`` in pixel
units on the continuous canvas ``[0, W] x [0, H]``; x points right, y points down, so angles
grow clockwise on screen (0 deg = towards the right edge, 90 deg = towards the bottom edge).

Shaping. Constructors compute a raw value ``t`` in 0..1, then ``out = curve(t)`` (see
:data:`CURVES`), then ``out = 1 - out`` if ``invert``.

Pure torch + kornia: nothing here imports ComfyUI.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from .errors import InputError
from .maps import apply_polarity, as_maps, blur_maps, match_batch, read_change_map, resize_maps
from .pixels import as_images
from .validate import check_choice, check_integer, check_number

#: ``curve(t)`` for t in 0..1; every curve maps 0 -> 0 and 1 -> 1 and is non-decreasing.
CURVES = {
    "linear": lambda t, g: t,                                             # t
    "smoothstep": lambda t, g: t * t * (3.0 - 2.0 * t),                   # 3t^2 - 2t^3
    "smootherstep": lambda t, g: t * t * t * (t * (6.0 * t - 15.0) + 10.0),  # 6t^5 - 15t^4 + 10t^3
    "gamma": lambda t, g: t.pow(g),                                       # t^gamma
    "ease-in": lambda t, g: t * t,                                        # t^2
    "ease-out": lambda t, g: 1.0 - (1.0 - t) * (1.0 - t),                 # 1 - (1 - t)^2
    "ease-in-out": lambda t, g: 0.5 - 0.5 * torch.cos(math.pi * t),       # (1 - cos(pi t)) / 2
}

#: Image reading for :func:`channel_map`: RGB weights of the luma, or a channel index.
LUMA_709 = (0.2126, 0.7152, 0.0722)
LUMA_601 = (0.299, 0.587, 0.114)
CHANNELS = {"luminance (Rec. 709)": LUMA_709, "luminance (Rec. 601)": LUMA_601,
            "red": 0, "green": 1, "blue": 2, "alpha": 3}

FEATHER_MODES = ("both", "outward", "inward")
COMBINE_OPS = ("min", "max", "multiply", "add", "subtract", "screen", "lerp")


# -- shaping ---------------------------------------------------------------------------------------

def ramp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``clamp((x - lo) / (hi - lo), 0, 1)``; ``lo > hi`` gives a falling ramp; ``|hi - lo| < 1e-6`` the step ``x > lo``."""
    if abs(hi - lo) < 1e-6:   # equal (or closer than float32 can divide by): a step
        return (x > lo).to(torch.float32)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def apply_curve(t: torch.Tensor, curve: str, gamma: float = 1.0,
                input_name: str = "curve") -> torch.Tensor:
    """``curve(t)`` for ``t`` in 0..1 (clamped first). ``gamma`` (> 0) is used by the ``gamma`` curve only."""
    check_choice(curve, CURVES, input_name)
    gamma = check_number(gamma, "gamma", 0.0, None, lo_open=True)
    return CURVES[curve](t.clamp(0.0, 1.0), gamma).clamp(0.0, 1.0).to(torch.float32)


def shape(t: torch.Tensor, curve: str, gamma: float, invert: bool) -> torch.Tensor:
    """The constructors' last step: ``curve(t)``, then ``1 - that`` if ``invert``."""
    return apply_polarity(apply_curve(t, curve, gamma), bool(invert)).contiguous()


def levels(change_map, in_low: float, in_high: float, out_low: float, out_high: float,
           curve: str = "linear", gamma: float = 1.0) -> torch.Tensor:
    """``out_low + (out_high - out_low) * curve(ramp(m, in_low, in_high))``.

    ``ramp`` is ``clamp((m - in_low) / (in_high - in_low), 0, 1)`` (a step ``m > in_low`` when
    ``in_low == in_high``). All four levels are in 0..1, so the result is too.
    """
    maps = as_maps(change_map, "change_map")
    in_low, in_high, out_low, out_high = [check_number(v, n, 0.0, 1.0) for v, n in (
        (in_low, "in_low"), (in_high, "in_high"), (out_low, "out_low"), (out_high, "out_high"))]
    t = apply_curve(ramp(maps, in_low, in_high), curve, gamma)
    return (out_low + (out_high - out_low) * t).clamp(0.0, 1.0).to(torch.float32)


# -- canvases and gradients ------------------------------------------------------------------------

#: the most pixels (width x height x batch_size) a map node may be asked to make from numbers: one 16384 x 16384
#: map (the widgets' largest), 1 GiB of float32 (a reference sets the size of what already exists: no cap)
MAX_MAP_PIXELS = 2 ** 28


def canvas(width: int, height: int, batch: int, reference) -> tuple[int, int, int]:
    """``(batch, height, width)`` of a new map: the reference's (IMAGE ``B,H,W,C`` or MASK) or the numbers.

    From numbers, at most :data:`MAX_MAP_PIXELS` in all; more is an error before anything is allocated.
    """
    if reference is not None:
        if isinstance(reference, torch.Tensor) and reference.ndim == 4 and reference.shape[-1] <= 4:
            ref = as_images(reference, "reference")
            return int(ref.shape[0]), int(ref.shape[1]), int(ref.shape[2])
        ref = as_maps(reference, "reference")
        return int(ref.shape[0]), int(ref.shape[1]), int(ref.shape[2])
    for value, name in ((width, "width"), (height, "height"), (batch, "batch_size")):
        check_integer(value, name, 1)
    pixels = int(width) * int(height) * int(batch)
    if pixels > MAX_MAP_PIXELS:
        raise InputError("batch_size" if batch > 1 else "width",
                         f"width x height x batch_size at most {MAX_MAP_PIXELS:,} pixels (one 16384 x 16384 map, "
                         f"1 GiB)", f"{width} x {height} x {batch} = {pixels:,} pixels")
    return int(batch), int(height), int(width)


def pixel_centres(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x)`` float32 ``(H,W)`` grids of pixel centres in pixel units (``y + 0.5``, ``x + 0.5``)."""
    y = torch.arange(height, dtype=torch.float32) + 0.5
    x = torch.arange(width, dtype=torch.float32) + 0.5
    return torch.meshgrid(y, x, indexing="ij")


def _batched(t: torch.Tensor, batch: int) -> torch.Tensor:
    return t.unsqueeze(0).expand(batch, *t.shape).contiguous()


def linear_gradient(size, angle: float, offset: float, curve: str = "linear", gamma: float = 1.0,
                    invert: bool = False) -> torch.Tensor:
    """0 at the back of the canvas, 1 at the front, along the direction ``angle`` (degrees).

    ``p = (x_c - W/2) cos a + (y_c - H/2) sin a`` (projection of the pixel centre on the
    direction), ``L = (W/2)|cos a| + (H/2)|sin a|`` (half the canvas's extent along it), then
    ``t = clamp(0.5 + p / (2L) - offset, 0, 1)``. The canvas corners sit at t = 0 and t = 1;
    ``offset`` (a fraction of that length) slides the ramp forwards.
    """
    b, h, w = size
    angle = check_number(angle, "angle")
    offset = check_number(offset, "offset", -1.0, 1.0)
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    y, x = pixel_centres(h, w)
    p = (x - w / 2.0) * c + (y - h / 2.0) * s
    half = (w / 2.0) * abs(c) + (h / 2.0) * abs(s)
    t = (0.5 + p / (2.0 * half) - offset).clamp(0.0, 1.0)
    return _batched(shape(t, curve, gamma, invert), b)


def radial_gradient(size, centre_x: float, centre_y: float, inner_radius: float, outer_radius: float,
                    curve: str = "linear", gamma: float = 1.0, invert: bool = False) -> torch.Tensor:
    """1 within ``inner_radius`` of the centre, falling to 0 at ``outer_radius``.

    Centre ``(centre_x W, centre_y H)``; radii are fractions of ``S = min(H, W)`` (0.5 reaches
    the middle of the shorter sides). ``d`` = pixel-centre distance to the centre in pixels,
    ``t = 1 - clamp((d - inner S) / ((outer - inner) S), 0, 1)`` (equal radii: a hard disc,
    1 where ``d <= inner S``).
    """
    b, h, w = size
    cx = check_number(centre_x, "centre_x", -1.0, 2.0)
    cy = check_number(centre_y, "centre_y", -1.0, 2.0)
    inner = check_number(inner_radius, "inner_radius", 0.0, None)
    outer = check_number(outer_radius, "outer_radius", 0.0, None)
    if outer < inner:
        raise InputError("outer_radius", f"at least inner_radius ({inner})", repr(outer))
    y, x = pixel_centres(h, w)
    d = torch.sqrt((x - cx * w) ** 2 + (y - cy * h) ** 2)
    side = float(min(h, w))
    t = 1.0 - ramp(d, inner * side, outer * side)
    return _batched(shape(t, curve, gamma, invert), b)


def angular_gradient(size, centre_x: float, centre_y: float, start_angle: float, mirror: bool = False,
                     curve: str = "linear", gamma: float = 1.0, invert: bool = False) -> torch.Tensor:
    """A sweep around the centre: 0 at ``start_angle``, rising clockwise to 1 just before a full turn.

    ``theta = atan2(y_c - cy H, x_c - cx W)`` in degrees (clockwise on screen, 0 = right),
    ``t = ((theta - start_angle) mod 360) / 360``. ``mirror``: ``t = 1 - |2t - 1|`` (0 at the
    start angle, 1 opposite it, no jump). The centre pixel itself reads ``theta = 0``.
    """
    b, h, w = size
    cx = check_number(centre_x, "centre_x", -1.0, 2.0)
    cy = check_number(centre_y, "centre_y", -1.0, 2.0)
    start = check_number(start_angle, "start_angle")
    y, x = pixel_centres(h, w)
    theta = torch.rad2deg(torch.atan2(y - cy * h, x - cx * w).to(torch.float64))
    t = (torch.remainder(theta - start, 360.0) / 360.0).to(torch.float32)
    if mirror:
        t = 1.0 - (2.0 * t - 1.0).abs()
    return _batched(shape(t, curve, gamma, invert), b)


# -- from a mask -----------------------------------------------------------------------------------

def _lower_envelope(f: torch.Tensor, check=None) -> torch.Tensor:
    """``min over j of f[:, j] + (i - j)^2`` for every row and column ``i`` of ``f`` ``(R, n)`` (float64, ``inf`` =
    no parabola there), exactly: Felzenszwalb and Huttenlocher's lower envelope of parabolas, all rows at once.

    The columns are visited in order (``n`` steps of a few vector operations over the rows); a row keeps the
    stack of parabolas on its envelope and the boundaries between them, and drops the ones a new parabola hides.
    The envelope is then read off by one search per row. The values are integers when ``f`` holds integers, and
    so is the result (the envelope picks a parabola whose value is the minimum; at a tie both values are equal).
    ``check`` is called every 32 columns.
    """
    r, n = f.shape
    stack = torch.zeros(r, n, dtype=torch.int64)             # positions of the envelope's parabolas
    bounds = torch.full((r, n + 1), math.inf, dtype=torch.float64)
    top = torch.full((r,), -1, dtype=torch.int64)            # index of the stack's top (-1: empty)
    lifted = f + torch.arange(n, dtype=torch.float64) ** 2   # f[j] + j^2: the parabolas' meeting points need it
    lives = torch.isfinite(f)
    infs = torch.full((r, 1), math.inf, dtype=torch.float64)
    for q in range(n):
        if check is not None and q % 32 == 0:
            check()
        live = lives[:, q:q + 1]
        if not bool(live.any()):
            continue
        top = top.view(-1, 1)
        while True:                                          # drop the parabolas q hides
            at = top.clamp(min=0)
            j = stack.gather(1, at)
            s = (lifted[:, q:q + 1] - lifted.gather(1, j)) / (2.0 * (q - j).to(torch.float64))
            drop = live & (top >= 0) & (s <= bounds.gather(1, at))
            if not bool(drop.any()):
                break
            top = top - drop.to(torch.int64)
        pushed = (top + live.to(torch.int64)).clamp(min=0)
        stack.scatter_(1, pushed, torch.where(live, q, stack.gather(1, pushed)))
        first = torch.where(top >= 0, s, -math.inf)
        bounds.scatter_(1, pushed, torch.where(live, first, bounds.gather(1, pushed)))
        bounds.scatter_(1, pushed + 1, infs)
        top = (top + live.to(torch.int64)).view(-1)
    at = torch.searchsorted(bounds[:, 1:].contiguous(), torch.arange(n, dtype=torch.float64).expand(r, n).contiguous())
    at = torch.minimum(at, top.clamp(min=0).view(-1, 1))     # the parabola whose interval holds each column
    j = torch.gather(stack, 1, at)
    out = (torch.arange(n).view(1, -1) - j).to(torch.float64) ** 2 + torch.gather(f, 1, j)
    return torch.where((top >= 0).view(-1, 1), out, torch.full_like(out, math.inf))


#: up to this reach (``ceil(limit)`` px) the horizontal pass takes the minimum over every shift directly (4 passes
#: over the map per pixel of reach); farther, the lower envelope of parabolas (its cost does not grow with it)
DIRECT_REACH = 64


def distance_to_mask(inside: torch.Tensor, limit: float, check=None) -> torch.Tensor:
    """Exact Euclidean distance (pixel centre to pixel centre) from each pixel to the nearest ``inside`` one.

    ``inside``: bool ``(B,H,W)``. Distances up to ``limit`` are exact; farther pixels (and every
    pixel of an empty mask) get ``inf``. Separable: the distance along one axis to the nearest inside
    pixel of each line comes from two running scans; then along the other axis ``d^2 = min over d of
    (dy(x + d)^2 + d^2)``, for a reach up to :data:`DIRECT_REACH` by trying every shift ``|d| <= limit``, farther
    by the lower envelope of parabolas (:func:`_lower_envelope`, along the shorter axis), whose cost does not
    grow with ``limit``. Both are exact (integer squared distances), so they agree bit for bit. ``check`` is
    called every 16 shifts or 32 columns (ComfyUI's interrupt check). (kornia's ``distance_transform`` is a soft-min
    cascade whose result is not Euclidean — diagonals come out up to 29 % short — so it is not used here.)
    """
    b, h, w = inside.shape
    reach = int(math.ceil(limit))
    if reach > DIRECT_REACH and h < w:   # the envelope runs along the shorter axis (its steps are sequential)
        return distance_to_mask(inside.transpose(1, 2), limit, check).transpose(1, 2).contiguous()
    rows = torch.arange(h, dtype=torch.float32).view(1, h, 1).expand(b, h, w)
    inf = torch.tensor(float("inf"))
    above = torch.where(inside, rows, -inf).cummax(dim=1).values
    below = torch.where(inside, rows, inf).flip(1).cummin(dim=1).values.flip(1)
    dy2 = torch.minimum(rows - above, below - rows) ** 2
    if reach > DIRECT_REACH:
        d2 = _lower_envelope(dy2.to(torch.float64).reshape(b * h, w), check).reshape(b, h, w).to(torch.float32)
    else:
        reach = min(reach, w - 1)
        padded = F.pad(dy2, (reach, reach), value=float("inf"))
        d2, shifted = dy2.clone(), torch.empty_like(dy2)
        for dx in range(1, reach + 1):
            if check is not None and dx % 16 == 0:
                check()
            for start in (reach + dx, reach - dx):
                torch.add(padded[..., start: start + w], float(dx * dx), out=shifted)
                torch.minimum(d2, shifted, out=d2)
    dist = torch.sqrt(d2)
    return torch.where(dist <= limit, dist, inf)


def distance_falloff(mask, inner: float, outer: float, threshold: float = 0.5, curve: str = "linear",
                     gamma: float = 1.0, invert: bool = False, check=None) -> torch.Tensor:
    """A soft-inpainting map from a hard mask: 1 inside and up to ``inner`` px outside, 0 from ``outer`` px.

    Inside = mask ``>= threshold``. ``d`` = exact Euclidean distance in pixels to the nearest
    inside pixel (:func:`distance_to_mask`), ``t = 1 - clamp((d - inner) / (outer - inner), 0, 1)``
    (``inner == outer``: 1 where ``d <= inner``). A mask with no inside pixel gives t = 0 everywhere.
    ``check``: called now and then during the distance transform (ComfyUI's interrupt check, from the node).
    """
    maps = as_maps(mask, "mask")
    inner = check_number(inner, "inner", 0.0, None)
    outer = check_number(outer, "outer", 0.0, None)
    threshold = check_number(threshold, "threshold", 0.0, 1.0, lo_open=True)
    if outer < inner:
        raise InputError("outer", f"at least inner ({inner})", repr(outer))
    d = distance_to_mask(maps >= threshold, outer, check)
    return shape(1.0 - ramp(d, inner, outer), curve, gamma, invert)


def feather(mask, radius: int, floor: float = 0.0, mode: str = "both") -> torch.Tensor:
    """``out = floor + (1 - floor) * F`` with ``F`` the Gaussian-feathered mask.

    ``both``: ``F = blur(m)``; ``outward``: ``max(m, blur(m))`` (never lowers a pixel, the edge
    spreads out); ``inward``: ``min(m, blur(m))`` (never raises a pixel, the edge softens inside).
    The blur is :func:`blur_maps`: a pixel more than ``radius`` px (along rows or columns) from
    every non-zero mask pixel keeps ``F = 0``, i.e. exactly ``floor``.
    """
    maps = as_maps(mask, "mask")
    check_integer(radius, "radius", 0, what="pixels")
    floor = check_number(floor, "floor", 0.0, 1.0)
    check_choice(mode, FEATHER_MODES, "mode")
    blurred = blur_maps(maps, radius)
    if mode == "outward":
        blurred = torch.maximum(maps, blurred)
    elif mode == "inward":
        blurred = torch.minimum(maps, blurred)
    return (floor + (1.0 - floor) * blurred).clamp(0.0, 1.0).contiguous()


# -- from an image ---------------------------------------------------------------------------------

def channel_map(image, channel: str, invert: bool = False,
                input_name: str = "image") -> torch.Tensor:
    """One value per pixel of an IMAGE: a luma or one channel, clamped to 0..1.

    ``luminance (Rec. 709)``: ``0.2126 R + 0.7152 G + 0.0722 B``; ``(Rec. 601)``:
    ``0.299 R + 0.587 G + 0.114 B`` — luma of the stored (gamma-encoded) values, by
    ``kornia.color.rgb_to_grayscale``. ``red/green/blue/alpha``: that channel (alpha needs a
    4-channel image; 1 = opaque). A 1-channel image is grey: its luma and R, G, B are that channel.
    """
    img = as_images(image, input_name)
    check_choice(channel, CHANNELS, "channel")
    c = img.shape[-1]
    pick = CHANNELS[channel]
    if c == 1 and pick != 3:
        out = img[..., 0]
    elif isinstance(pick, tuple):
        weights = torch.tensor(pick, dtype=torch.float32)
        out = kornia.color.rgb_to_grayscale(img[..., :3].permute(0, 3, 1, 2), rgb_weights=weights)[:, 0]
    elif pick >= c:
        raise InputError(input_name, "an IMAGE with an alpha channel (4 channels) for channel 'alpha'",
                             f"{c} channels")
    else:
        out = img[..., pick]
    return apply_polarity(out.clamp(0.0, 1.0), bool(invert)).contiguous()


def depth_map(depth, near_value: float = 1.0, far_value: float = 0.0, change: str = "near", curve: str = "linear",
              gamma: float = 1.0) -> torch.Tensor:
    """Change by distance from a depth IMAGE.

    ``d`` = the depth image's grey value (its Rec. 709 luma). Nearness
    ``t = clamp((d - far_value) / (near_value - far_value), 0, 1)``: 1 at ``near_value`` and
    beyond, 0 at ``far_value`` and beyond (defaults: white = near, as Depth Anything / MiDaS /
    Zoe output; swap the two for white = far). ``change = near``: ``out = curve(t)``;
    ``far``: ``out = 1 - curve(t)``. Equal values: a hard cut, near = ``d > near_value``.
    """
    near = check_number(near_value, "near_value", 0.0, 1.0)
    far = check_number(far_value, "far_value", 0.0, 1.0)
    check_choice(change, ("near", "far"), "change")
    d = channel_map(depth, "luminance (Rec. 709)", input_name="depth")
    t = ramp(d, far, near)
    return shape(t, curve, gamma, change == "far")


# -- semantic --------------------------------------------------------------------------------------

def semantic_map(heat, floor: float = 0.0, ceiling: float = 1.0, gamma: float = 1.0, normalize: bool = False) -> torch.Tensor:
    """Edit strength from a DiffEdit heat map: ``out = floor + (ceiling - floor) * heat ** gamma``.

    ``heat`` is any MASK in 0..1 (1 = most related to the edit prompt). ``normalize``: first
    divide each heat map by its own maximum (a map whose maximum is 0 stays 0). This is
    :func:`levels` with input range 0..1, output range floor..ceiling and the gamma curve.
    """
    maps = as_maps(heat, "heat")
    if normalize:
        peak = maps.amax(dim=(1, 2), keepdim=True)
        maps = torch.where(peak > 0, maps / peak.clamp_min(1e-12), maps)
    for value, name in ((floor, "floor"), (ceiling, "ceiling")):
        check_number(value, name, 0.0, 1.0)
    return levels(maps, 0.0, 1.0, floor, ceiling, "gamma", gamma)


# -- operations ------------------------------------------------------------------------------------

def combine(map_a, map_b, operation: str, factor: float = 0.5) -> torch.Tensor:
    """Combine two maps pixel by pixel; ``b`` is resized to ``a``'s size, one map broadcasts over the other's batch.

    ``min(a, b)``, ``max(a, b)``, ``multiply a b``, ``add min(a + b, 1)``,
    ``subtract max(a - b, 0)``, ``screen 1 - (1 - a)(1 - b)``, ``lerp a (1 - factor) + b factor``.
    """
    a = as_maps(map_a, "map_a")
    b = resize_maps(as_maps(map_b, "map_b"), a.shape[-2:])
    check_choice(operation, COMBINE_OPS, "operation")
    f = check_number(factor, "factor", 0.0, 1.0)
    batch = max(a.shape[0], b.shape[0])
    a = match_batch(a, batch, "map_a", "other map's batch")
    b = match_batch(b, batch, "map_b", "other map's batch")
    out = {
        "min": lambda: torch.minimum(a, b),
        "max": lambda: torch.maximum(a, b),
        "multiply": lambda: a * b,
        "add": lambda: a + b,
        "subtract": lambda: a - b,
        "screen": lambda: 1.0 - (1.0 - a) * (1.0 - b),
        "lerp": lambda: a * (1.0 - f) + b * f,
    }[operation]()
    return out.clamp(0.0, 1.0).contiguous()


def quantize(change_map, levels: int) -> torch.Tensor:
    """``floor(m (N - 1) + 0.5) / (N - 1)`` with ``N = levels``: 0, 1/(N-1), ..., 1 (halves round up)."""
    m = as_maps(change_map, "change_map")
    check_integer(levels, "levels", 2, what="levels")
    n = float(levels - 1)
    return (torch.floor(m * n + 0.5) / n).clamp(0.0, 1.0)


def invert(change_map) -> torch.Tensor:
    """``1 - m``: white = keep (the paper's code) <-> white = change (ComfyUI); twice gives the map back."""
    return read_change_map(change_map, invert=True)


def stabilize(change_map, epsilon: float) -> torch.Tensor:
    """Snap ``m <= eps`` to exactly 0 and ``m >= 1 - eps`` to exactly 1 (``0 <= eps < 0.5``); the rest is kept.

    Compared in float64, so ``eps = 0.02`` snaps a stored 0.98.
    """
    m = as_maps(change_map, "change_map")
    eps = check_number(epsilon, "epsilon", 0.0, 0.5, hi_open=True)
    m64 = m.to(torch.float64)
    out = torch.where(m64 <= eps, torch.zeros_like(m), m)
    return torch.where(1.0 - m64 <= eps, torch.ones_like(m), out)
