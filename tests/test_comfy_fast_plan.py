"""Planning without building a schedule per total step count.

``denoise`` mode needs, per distinct ``M = int(N / g)``, one noise level of ComfyUI's ``M``-step
schedule. The closed form (``core.closed_form.denoise_start_levels``) must give the start steps that
ComfyUI's own code gives (``plan.start_steps(..., closed_form_levels=False)``, the reference) for every
scheduler, sampler, model sampling and map value.
"""

import pytest
import torch

STEPS = (1, 4, 13)
SAMPLERS = ("euler", "dpm_2", "uni_pc")   # dpm_2 / uni_pc: ComfyUI computes steps + 1 and drops one level
MAP_VALUES = torch.cat([torch.linspace(0.0, 1.0, 301), torch.tensor([0.02, 1 / 3, 2 / 3, 0.7, 0.9999, 0.99995])])


@pytest.fixture(scope="module")
def sampling(comfy):
    return comfy.module("nodes.plan")


@pytest.fixture(scope="module")
def core_schedule(comfy):
    return comfy.module("nodes.core.schedule")


@pytest.fixture(scope="module")
def closed_form(comfy):
    return comfy.module("nodes.core.closed_form")


@pytest.fixture(scope="module")
def samplings(cw, world):
    """Real ComfyUI model samplings: the analytic eps and flow models, and ComfyUI's ModelSampling* nodes on them."""
    from comfy_extras import nodes_model_advanced as nma

    eps, flow = cw.make_model(world, "eps"), cw.make_model(world, "flow")
    return {
        "eps": eps,
        "flow (shift 3)": flow,
        "v zsnr": nma.ModelSamplingDiscrete().patch(eps, "v_prediction", True)[0],
        "flux": nma.ModelSamplingFlux().patch(flow, 1.15, 0.5, 1024, 1024)[0],
        "edm": nma.ModelSamplingContinuousEDM().patch(eps, "edm", 120.0, 0.002)[0],
    }


def _both(sampling, model, sampler, scheduler, steps, denoise, values=MAP_VALUES):
    full = sampling.ksampler_sigmas(model, steps, sampler, scheduler, denoise).cpu()
    reference = sampling.Reference(sampler, scheduler, denoise)
    g = values.reshape(1, 1, 1, -1)
    fast = sampling.start_steps("denoise", g, full, model, reference)
    slow = sampling.start_steps("denoise", g, full, model, reference, closed_form_levels=False)
    return fast, slow


@pytest.mark.parametrize("scheduler", ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
                                       "linear_quadratic", "kl_optimal"])
def test_denoise_start_steps_equal_comfyuis_own_schedules(comfy, sampling, samplings, scheduler):
    checked = 0
    for name, model in samplings.items():
        for sampler in SAMPLERS:
            for steps in STEPS:
                for denoise in (1.0, 0.55):
                    fast, reference = _both(sampling, model, sampler, scheduler, steps, denoise)
                    assert torch.equal(fast, reference), (name, sampler, steps, denoise,
                                                          MAP_VALUES[(fast != reference).flatten()][:5])
                    checked += int(torch.isfinite(reference).sum())
    assert checked > 0


@pytest.mark.parametrize("scheduler", ["normal", "karras", "sgm_uniform", "simple"])
def test_denoise_start_steps_equal_at_30_steps_on_a_fine_ramp(comfy, sampling, samplings, scheduler):
    values = torch.linspace(0.05, 1.0, 1201)
    for name in ("eps", "flow (shift 3)"):
        fast, reference = _both(sampling, samplings[name], "euler", scheduler, 30, 1.0, values)
        assert torch.equal(fast, reference), name


@pytest.mark.parametrize("scheduler", ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform",
                                       "linear_quadratic", "kl_optimal", "beta"])
@pytest.mark.parametrize("sampler", ["euler", "dpm_2"])
def test_closed_form_level_is_comfyuis_level(comfy, sampling, core_schedule, samplings, scheduler, sampler):
    """Each closed-form level is ComfyUI's element ``-(n+1)`` of the ``M``-step schedule, to float32 rounding."""
    import comfy.samplers as cs

    n = 7
    totals = torch.tensor([7, 8, 9, 10, 11, 13, 17, 25, 70, 71, 140, 699, 700, 1001, 2500])
    for name, model in samplings.items():
        levels = sampling.denoise_levels(model.get_model_object("model_sampling"), sampler, scheduler, n)
        assert levels is not None, "a known scheduler must not fall back to ComfyUI's code"
        got = levels(totals)
        ks = cs.KSampler(model, n, "cpu", sampler, scheduler, 1.0)
        want = torch.tensor([float(ks.calculate_sigmas(int(m))[-(n + 1)]) for m in totals], dtype=torch.float64)
        if scheduler in sampling.EXACT_CLOSED_FORMS:   # ComfyUI's own arithmetic (beta, simple, ddim: table entries)
            assert torch.equal(got, want), (name, got[got != want], want[got != want])
            continue
        # well inside the band (schedule.LEVEL_CHECK_RTOL) in which levels are recomputed by ComfyUI's code
        assert torch.allclose(got, want, rtol=core_schedule.LEVEL_CHECK_RTOL / 4, atol=0), (name, (got / want - 1).abs().max())


def test_unknown_and_replaced_schedulers_fall_back(comfy, sampling, samplings, closed_form):
    import comfy.samplers

    assert closed_form.denoise_start_levels("no_such_scheduler", torch.tensor([10]), 5) is None
    ms = samplings["eps"].get_model_object("model_sampling")
    replaced = {"normal": comfy.samplers.SchedulerHandler(lambda model_sampling, steps: comfy.samplers.normal_scheduler(
        model_sampling, steps))}
    original = comfy.samplers.SCHEDULER_HANDLERS["normal"]
    try:   # another extension replaced ComfyUI's scheduler function: its own code decides
        comfy.samplers.SCHEDULER_HANDLERS.update(replaced)
        assert sampling.denoise_levels(ms, "euler", "normal", 5) is None
    finally:
        comfy.samplers.SCHEDULER_HANDLERS["normal"] = original
    assert sampling.denoise_levels(ms, "euler", "normal", 5) is not None


def test_beta_at_more_steps_than_its_distinct_timesteps_plans_as_ksampler(comfy, sampling, samplings):
    """At 150 steps ComfyUI's beta schedule repeats a timestep and has 149 levels: KSampler(denoise) slices what
    there is; the plan gives the start steps of that (it used to index past the schedule's start)."""
    import comfy.samplers as cs

    model = samplings["eps"]
    assert len(cs.KSampler(model, 150, "cpu", "euler", "beta", 1.0).calculate_sigmas(150)) == 150
    fast, reference = _both(sampling, model, "euler", "beta", 150, 1.0, torch.tensor([0.995, 0.99, 0.5, 0.1]))
    assert torch.equal(fast, reference) and bool(torch.isfinite(fast).all())


def test_timestep_and_step_modes_unchanged_by_the_closed_form(comfy, sampling, samplings):
    """A plan in every mode has the start steps computed by the reference path, on a 128x128 ramp."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 1024), torch.linspace(0, 1, 1024), indexing="ij")
    cmap = ((xx + yy) / 2).unsqueeze(0)
    model = samplings["eps"]
    for mode in ("step", "timestep", "denoise"):
        key = sampling.PlanKey.for_ksampler(model, (1, 4, 128, 128), 30, "euler", "normal")
        run = sampling.ChangeMap(maps=cmap, mode=mode).plan(model, key).run
        ref = sampling.start_steps(mode, run.strength_map.cpu(), run.sigmas.cpu(), model,
                                   sampling.Reference("euler", "normal", 1.0), closed_form_levels=False)
        assert torch.equal(run.start.cpu(), ref)


@pytest.mark.parametrize("scheduler", ["normal", "sgm_uniform"])
def test_one_level_is_comfyuis_level_bit_for_bit(comfy, sampling, samplings, scheduler):
    """The exact fallback of normal / sgm_uniform computes one level as ComfyUI's normal_scheduler does (its
    linspace, then sigma of the one element), not its Python loop over every level: the same float, bit for bit."""
    import comfy.samplers as cs

    totals = [7, 8, 9, 13, 70, 71, 699, 1001, 2500]
    for name in ("eps", "flow (shift 3)", "v zsnr", "edm"):
        model = samplings[name]
        ms = model.get_model_object("model_sampling")
        for sampler in ("euler", "dpm_2"):
            for n in (1, 7):
                one = sampling._one_level(ms, sampler, scheduler, n)
                assert one is not None
                ks = cs.KSampler(model, n, "cpu", sampler, scheduler, 1.0)
                for m in (t for t in totals if t >= n):
                    want = float(ks.calculate_sigmas(m)[-(n + 1):][0])
                    assert one(m) == want, (name, sampler, n, m, one(m), want)
    assert sampling._one_level(samplings["eps"].get_model_object("model_sampling"), "euler", "karras", 3) is None


@pytest.mark.parametrize("scheduler", ["normal", "karras", "exponential", "kl_optimal", "simple", "beta"])
def test_planning_10000_steps_of_a_random_map_asks_comfyui_for_bounded_work(comfy, sampling, samplings, scheduler,
                                                                           monkeypatch):
    """A random map at latent resolution (distinct values down to 1e-4) at 10,000 steps: the closed form plans it and
    ComfyUI's own scheduler code is asked for at most ``EXACT_BUDGET`` levels in all (it was asked for 10^6-10^8
    levels through the normal scheduler's Python loop: 20-170 s before the first step). Timing is in
    benchmarks/bench_limits.py; here the work is counted."""
    import comfy.samplers as cs

    core_schedule = comfy.module("nodes.core.schedule")
    asked = []
    original = cs.KSampler.calculate_sigmas
    monkeypatch.setattr(cs.KSampler, "calculate_sigmas", lambda self, steps: asked.append(int(steps)) or original(self, steps))
    model = samplings["eps"]
    g = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    full = sampling.ksampler_sigmas(model, 10_000, "euler", scheduler, 1.0, device="cpu")
    for fractional in (False, True):
        asked.clear()
        key = sampling.PlanKey.of(model, (1, 4, 64, 64), full, sampling.Reference("euler", scheduler, 1.0))
        run = sampling.ChangeMap(maps=g[0], mode="denoise", fractional=fractional).plan(model, key).run
        assert sum(asked) <= core_schedule.EXACT_BUDGET, (scheduler, fractional, len(asked), sum(asked))
        assert bool(torch.isfinite(run.start).any())


def test_beta_at_more_steps_than_the_table_has_timesteps_is_planned_in_closed_form(comfy, sampling, samplings):
    """At 1,500 steps (the model's table has 1,000 timesteps) every M-step beta schedule is shorter than
    KSampler's slice: its first level is the level; computed without asking ComfyUI's code for each M."""
    import comfy.samplers as cs

    model = samplings["eps"]
    ms = model.get_model_object("model_sampling")
    for sampler in ("euler", "dpm_2"):
        n = 1500
        levels = sampling.denoise_levels(ms, sampler, "beta", n)
        totals = torch.tensor([1500, 1501, 1999, 3000, 7777])
        got = levels(totals)
        ks = cs.KSampler(model, n, "cpu", sampler, "beta", 1.0)
        want = torch.tensor([float(ks.calculate_sigmas(int(m))[-(n + 1):][0]) for m in totals], dtype=torch.float64)
        assert torch.equal(got, want), (sampler, got, want)
    fast, reference = _both(sampling, model, "euler", "beta", 1500, 1.0, torch.tensor([0.9, 0.5, 0.2, 0.01]))
    assert torch.equal(fast, reference)
