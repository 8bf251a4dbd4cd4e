"""Start steps, step indices and step masks: exact values."""

import math

import pytest
import torch


@pytest.fixture(scope="module")
def sch(pack):
    from dde_pack.nodes.core import schedule

    return schedule


@pytest.fixture(scope="module")
def closed(pack):
    from dde_pack.nodes.core import closed_form

    return closed_form


def test_step_mode_gives_floor_g_n_free_steps(sch):
    g = torch.tensor([0.0, 0.05, 0.25, 0.5, 0.7, 0.75, 0.999, 1.0])
    k = sch.start_steps_step(g, 20)
    assert k.tolist() == [math.inf, 19, 15, 10, 6, 5, 1, 0]
    free = sch.free_steps(k, 20)
    assert free.tolist() == [0, 1, 5, 10, 14, 15, 19, 20]


def test_thresholds_mode_first_step_at_or_below_value_and_zero_never(sch):
    t = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])
    g = torch.tensor([0.0, 0.1, 0.2, 0.5, 0.79, 1.0])
    assert sch.start_steps_thresholds(g, t).tolist() == [math.inf, 4, 3, 2, 2, 0]
    # non-monotone thresholds: once free, stays free (running minimum)
    t2 = torch.tensor([1.0, 0.3, 0.9, 0.0])
    assert sch.start_steps_thresholds(torch.tensor([0.4]), t2).tolist() == [1]


def test_timestep_thresholds_formula(sch):
    th = sch.timestep_thresholds([999.0, 500.0, 0.0], 999.0, 0.0)
    assert th.tolist() == pytest.approx([1.0, 500 / 999, 0.0])


def test_denoise_mode_matches_a_brute_force_definition(sch):
    n = 10
    full = lambda m: [20.0 * (1 - i / m) ** 2 for i in range(m)] + [0.0]  # any decreasing schedule family
    sigmas = full(n)
    calls = []

    def start(m):
        calls.append(m)
        return full(m)[-(n + 1)]

    g = torch.tensor([0.0, 0.03, 0.1, 0.25, 0.5, 0.72, 0.9999, 1.0])
    k = sch.start_steps_denoise(g, sigmas, start)
    expect = []
    for v in g.tolist():
        if v <= 0:
            expect.append(math.inf)
            continue
        level = sigmas[0] if v > 0.9999 else full(int(n / v))[-(n + 1)]
        first = next((i for i in range(n) if sigmas[i] <= level * (1 + 1e-5)), None)
        expect.append(math.inf if first is None else first)
    assert k.tolist() == expect
    assert len(set(calls)) == len(calls) and max(calls) == int(n / 0.03)  # memoised, only the M the map needs


def _beta_schedule_brute_force(table, steps, ppf):
    """ComfyUI's beta_scheduler, literally (float64, rint half to even), with ``ppf`` for the distribution's quantiles."""
    t_count = table.numel() - 1
    x = 1.0 - torch.arange(steps, dtype=torch.float64) * (1.0 / steps)
    ts = torch.round(ppf(x) * t_count)
    out, last = [], -1.0
    for t in ts.tolist():
        if t != last:
            out.append(float(table[int(t)]))
        last = t
    return out + [0.0]


@pytest.mark.parametrize("power", [1.0, 0.5, 2.0])
def test_beta_levels_count_the_grid_as_comfyuis_beta_scheduler_samples_it(closed, power):
    """Element -(j + 1) of the beta schedule from CDF boundary counts equals the literal schedule's.

    ``x ** power`` stands in for the Beta distribution (monotone CDF on 0..1, quantile ``x ** (1/power)``);
    power 1 with an odd table puts grid points exactly on rounding boundaries (x T = t + 1/2), where the
    quantile decides; power 2 makes the low end flat, so long schedules repeat timesteps there.
    """
    table = torch.linspace(14.6, 0.03, 1000, dtype=torch.float32).flip(0).contiguous()   # T = 999, ascending levels
    cdf = lambda p: p ** power
    ppf = lambda x: x ** (1.0 / power)
    steps = torch.tensor([1, 2, 3, 4, 7, 10, 30, 31, 150, 151, 333, 999, 1000, 1998, 4000])
    for j in (1, 2, 7, 30, 150):
        got = closed.beta_start_levels(table, steps, j, cdf, ppf)
        for s, level in zip(steps.tolist(), got.tolist()):
            sched = _beta_schedule_brute_force(table, s, ppf)
            if len(sched) < j + 1 and len(sched) < 3:   # one distinct timestep: left to ComfyUI's own code
                assert math.isnan(level), (s, j)
            elif len(sched) < j + 1:   # fewer distinct timesteps than asked: KSampler slices the whole schedule
                assert level == sched[0], (power, s, j)
            else:
                assert level == sched[-(j + 1)], (power, s, j)


def test_beta_levels_on_exact_ties_follow_rint_half_to_even(closed):
    """Grid points on a rounding boundary: the quantile and rint decide, bit for bit as ComfyUI computes them."""
    table = torch.arange(4, dtype=torch.float32)   # T = 3, table[t] = t
    ident = lambda x: x
    # S = 2: x = 1/2 exactly, 1.5 -> 2 (half to even). S = 6: 1 - 5 * (1/6) = 0.16666666666666674 in float64,
    # so 3 x = 0.5000000000000002 -> 1 (not 0), and 1 - 3 * (1/6) = 0.5 -> 1.5 -> 2
    assert _beta_schedule_brute_force(table, 2, ident) == [3.0, 2.0, 0.0]
    assert _beta_schedule_brute_force(table, 6, ident) == [3.0, 2.0, 1.0, 0.0]
    assert closed.beta_start_levels(table, torch.tensor([2, 6]), 1, ident, ident).tolist() == [2.0, 1.0]
    assert closed.beta_start_levels(table, torch.tensor([2, 6]), 2, ident, ident).tolist() == [3.0, 2.0]


def test_denoise_scale_multiplies_the_map(sch):
    n = 8
    full = lambda m: [10.0 * (1 - i / m) for i in range(m)] + [0.0]
    k_half = sch.start_steps_denoise(torch.tensor([1.0]), full(n), lambda m: full(m)[-(n + 1)], denoise=0.5)
    k_ref = sch.start_steps_denoise(torch.tensor([0.5]), full(n), lambda m: full(m)[-(n + 1)])
    assert k_half.tolist() == k_ref.tolist()


def test_step_index_maps_calls_to_steps_including_intermediate_sigmas(sch):
    sigmas = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])
    sig = torch.tensor([10.0, 7.0, 5.0, 4.99999, 2.0, 1.5, 1.0, 0.5])
    assert sch.step_index(sig, sigmas).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sch.step_index(torch.tensor([99.0]), sigmas).tolist() == [0]


def test_step_mask_binary_soft_and_strength(sch):
    start = torch.tensor([0.0, 2.0, 4.0, math.inf]).view(4, 1, 1, 1)
    g = torch.tensor([1.0, 0.6, 0.2, 0.0]).view(4, 1, 1, 1)
    idx = torch.tensor([2, 2, 2, 2])
    assert sch.step_mask(start, g, idx, 5).flatten().tolist() == [1.0, 1.0, 0.0, 0.0]
    soft = sch.step_mask(start, g, idx, 5, softness=0.8).flatten()   # fade over 4 steps
    assert soft.tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])
    mixed = sch.step_mask(start, g, idx, 5, strength=0.25).flatten()
    assert mixed.tolist() == pytest.approx([1.0, 0.25 + 0.75 * 0.6, 0.75 * 0.2, 0.0])


def test_run_kept_is_never_freed_pixels(sch):
    start = torch.tensor([0.0, math.inf]).view(2, 1, 1, 1)
    g = torch.tensor([1.0, 0.0]).view(2, 1, 1, 1)
    run = sch.DifferentialRun(start=start, strength_map=g, sigmas=torch.tensor([3.0, 1.0, 0.0]), n_steps=2)
    assert run.kept.flatten().tolist() == [False, True]
    assert run.mask(torch.tensor([1.0, 1.0])).flatten().tolist() == [1.0, 0.0]
