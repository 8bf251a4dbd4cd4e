"""A small learned world: a class-conditional diffusion model trained on scikit-learn's digits.

Test and benchmark support only (scikit-learn is not a pack requirement).

Data
    ``sklearn.datasets.load_digits`` (1,797 labelled 8x8 digits, values 0..16) scaled to 0..1 and
    upsampled bilinearly to 16x16 pixels. A fixed permutation (seed 0) splits them into ``train``
    (70 %), ``tune`` (10 %) and ``test`` (20 %, held out from the model and from the judge).
"VAE"
    A fixed invertible pixel-unshuffle: the grey picture (mean of R, G, B) ``p`` in 0..1 becomes the
    4 x 8 x 8 latent ``2 * unshuffle(p, 2) - 1``; decoding is the exact inverse (grey RGB). So a
    latent cell is 2 x 2 picture pixels.
Model
    :class:`DigitNet`, a conv UNet (8x8 and 4x4 levels, FiLM time + class embeddings, ~0.5 M
    parameters) predicting eps on ComfyUI's own SD1.5 discrete schedule
    (``comfy.model_sampling.ModelSamplingDiscrete``: linear betas 0.00085..0.012, 1000 steps). Its
    input is ComfyUI's ``calculate_input`` (``x / sqrt(sigma^2 + 1)``) and its timestep
    ``sigma_to_t``, exactly as :class:`comfy.model_base.BaseModel` calls it. The class arrives as
    the cross-attention context ``(B, 1, 10)``, a one-hot row; the zero row (what ConditioningZeroOut
    and DiffEdit's default reference give) is the null class used for CFG, trained by dropping the
    class 10 % of the time.
Training
    Deterministic for a seed (one thread, ``torch.manual_seed``), cached in ``~/.cache/dde``
    (``DDE_CACHE`` overrides) under a key hashing the training code (:func:`training_source`) and the
    seed; never in the repo.
Judge
    An RBF SVC on the 16x16 training pictures; :func:`judge_accuracy` on the held-out split.

Requires ComfyUI on ``sys.path`` for :func:`make_model` and :func:`train` (the schedule).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os

import torch
import torch.nn.functional as F

SIDE = 16          # picture side in pixels
LATENT = 8         # latent side (pixel-unshuffle by 2)
CLASSES = 10
SEED = 0
STEPS = 1200       # training steps
BATCH = 128
_CACHE: dict = {}


# -- data -----------------------------------------------------------------------------------------

def dataset():
    """``(pictures (N,16,16) float32 0..1, labels (N,) int64, splits {name: index tensor}``)."""
    if "data" in _CACHE:
        return _CACHE["data"]
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32) / 16.0
    x = F.interpolate(x.unsqueeze(1), size=(SIDE, SIDE), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    a, b = int(0.7 * len(y)), int(0.8 * len(y))
    splits = {"train": perm[:a], "tune": perm[a:b], "test": perm[b:]}
    _CACHE["data"] = (x, y, splits)
    return _CACHE["data"]


def to_image(pictures: torch.Tensor) -> torch.Tensor:
    """Grey pictures ``(B,H,W)`` → ComfyUI IMAGE ``(B,H,W,3)``."""
    return pictures.unsqueeze(-1).expand(*pictures.shape, 3).contiguous()


def encode(image: torch.Tensor) -> torch.Tensor:
    """IMAGE ``(B,16,16,C)`` (or grey ``(B,16,16)``) → latent ``(B,4,8,8)`` in -1..1."""
    grey = image[..., :3].mean(-1) if image.ndim == 4 else image
    return F.pixel_unshuffle(grey.unsqueeze(1).to(torch.float32), 2) * 2.0 - 1.0


def decode(latent: torch.Tensor) -> torch.Tensor:
    """Latent ``(B,4,8,8)`` → IMAGE ``(B,16,16,3)`` clamped to 0..1 (exact inverse of :func:`encode` inside 0..1)."""
    grey = F.pixel_shuffle((latent.to(torch.float32) + 1.0) / 2.0, 2)[:, 0].clamp(0, 1)
    return to_image(grey)


# -- the network ------------------------------------------------------------------------------------

def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32).reshape(-1, 1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(torch.nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1 = torch.nn.GroupNorm(8, cin)
        self.c1 = torch.nn.Conv2d(cin, cout, 3, padding=1)
        self.e = torch.nn.Linear(emb, 2 * cout)
        self.n2 = torch.nn.GroupNorm(8, cout)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = torch.nn.Conv2d(cin, cout, 1) if cin != cout else torch.nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.e(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        h = self.c2(F.silu(h))
        return self.skip(x) + h


class DigitNet(torch.nn.Module):
    """Class-conditional eps UNet on 4 x 8 x 8 latents; ``forward(x, timesteps, context)`` as ComfyUI calls it."""

    def __init__(self, width: int = 48, emb: int = 128, device=None, operations=None, **kwargs):
        super().__init__()
        self.dtype = torch.float32
        self.temb = torch.nn.Sequential(torch.nn.Linear(64, emb), torch.nn.SiLU(), torch.nn.Linear(emb, emb))
        self.cemb = torch.nn.Linear(CLASSES, emb)   # the zero context row gives the bias: the null class
        self.inp = torch.nn.Conv2d(4, width, 3, padding=1)
        self.d1 = ResBlock(width, width, emb)
        self.down = torch.nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.m1 = ResBlock(2 * width, 2 * width, emb)
        self.m2 = ResBlock(2 * width, 2 * width, emb)
        self.up = torch.nn.Conv2d(2 * width, width, 3, padding=1)
        self.u1 = ResBlock(2 * width, width, emb)
        self.out_norm = torch.nn.GroupNorm(8, width)
        self.out = torch.nn.Conv2d(width, 4, 3, padding=1)
        self.calls: list[int] = []

    def forward(self, x, timesteps, context=None, control=None, transformer_options={}, **kwargs):
        x = x[:, :4].to(torch.float32)
        if context is None:
            context = torch.zeros(x.shape[0], 1, CLASSES, device=x.device)
        c = context.to(torch.float32)[:, 0, :CLASSES]
        if c.shape[0] != x.shape[0]:
            c = c.repeat(x.shape[0] // c.shape[0], 1)
        e = F.silu(self.temb(timestep_embedding(timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1
                                                 else timesteps.reshape(-1), 64)) + self.cemb(c))
        h0 = self.inp(x)
        h1 = self.d1(h0, e)
        h = self.down(h1)
        h = self.m2(self.m1(h, e), e)
        h = self.up(F.interpolate(h, scale_factor=2, mode="nearest"))
        h = self.u1(torch.cat([h, h1], dim=1), e)
        self.calls.append(int(x.shape[0]))
        return self.out(F.silu(self.out_norm(h)))


def one_hot(labels) -> torch.Tensor:
    """``(B,1,10)`` context rows; label ``None`` or ``-1`` → the zero row (null class)."""
    labels = [(-1 if v is None else int(v)) for v in (labels if isinstance(labels, (list, tuple)) else labels.tolist())]
    out = torch.zeros(len(labels), 1, CLASSES)
    for i, v in enumerate(labels):
        if v >= 0:
            out[i, 0, v] = 1.0
    return out


# -- training (cached) ------------------------------------------------------------------------------

def training_source() -> str:
    """The code the weights depend on: data, latent encoding, network, training loop and their constants."""
    parts = [inspect.getsource(f) for f in (dataset, encode, timestep_embedding, ResBlock, DigitNet, one_hot, fit)]
    return "\n".join(parts) + f"|{SIDE}|{LATENT}|{CLASSES}|{STEPS}|{BATCH}|torch {torch.__version__.split('+')[0]}"


def cache_path(seed: int = SEED) -> str:
    key = hashlib.sha256((training_source() + f"|seed={seed}").encode()).hexdigest()[:16]
    root = os.environ.get("DDE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dde"))
    return os.path.join(root, f"digits-{key}.pt")


def train(seed: int = SEED, log=None) -> dict:
    """The trained weights for ``seed``: from the cache, or trained now (deterministic) and cached."""
    path = cache_path(seed)
    if os.path.exists(path):
        return torch.load(path, map_location="cpu", weights_only=True)
    ema = fit(seed, STEPS, log)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + f".{os.getpid()}.tmp"
    torch.save(ema, tmp)
    os.replace(tmp, path)
    return ema


def fit(seed: int, steps: int, log=None) -> dict:
    """``steps`` of AdamW (one-cycle lr 2e-3, batch 128, 10 % null class) on the train split; the EMA weights."""
    import comfy.model_sampling

    sigmas = comfy.model_sampling.ModelSamplingDiscrete().sigmas.to(torch.float32)   # ComfyUI's SD1.5 schedule
    x, y, splits = dataset()
    lat = encode(x[splits["train"]])
    lab = y[splits["train"]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            net = DigitNet()
            net.train()
            opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.05)
            ema = {k: v.detach().clone() for k, v in net.state_dict().items()}
            for step in range(steps):
                idx = torch.randint(0, len(lab), (BATCH,), generator=gen)
                x0, c = lat[idx], one_hot(lab[idx])
                drop = torch.rand(BATCH, generator=gen) < 0.1
                c[drop] = 0.0
                t = torch.randint(0, len(sigmas), (BATCH,), generator=gen)
                s = sigmas[t].view(-1, 1, 1, 1)
                eps = torch.randn(x0.shape, generator=gen)
                xin = (x0 + s * eps) / torch.sqrt(s * s + 1.0)         # BaseModel's calculate_input (EPS)
                loss = F.mse_loss(net(xin, t.to(torch.float32), c), eps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                decay = min(0.999, (1 + step) / (10 + step))
                with torch.no_grad():
                    for k, v in net.state_dict().items():
                        ema[k].mul_(decay).add_(v.detach(), alpha=1 - decay) if v.dtype.is_floating_point else ema[k].copy_(v)
                if log is not None and step % 250 == 0:
                    log(f"digits model step {step}/{steps} loss {float(loss.detach()):.4f}")
            net.calls.clear()
    finally:
        torch.set_num_threads(threads)
    return ema


# -- as a ComfyUI MODEL -----------------------------------------------------------------------------

def make_model(seed: int = SEED):
    """A ``ModelPatcher`` around ``BaseModel(unet_model=DigitNet)`` (eps, SD1.5 discrete schedule) with trained weights."""
    import comfy.latent_formats
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models_base

    class DigitsConfig(comfy.supported_models_base.BASE):
        unet_config = {}
        unet_extra_config = {}
        latent_format = comfy.latent_formats.LatentFormat
        memory_usage_factor = 0.01

    state = train(seed)
    device = comfy.model_management.get_torch_device()
    base = comfy.model_base.BaseModel(DigitsConfig({}), model_type=comfy.model_base.ModelType.EPS, device=device,
                                      unet_model=DigitNet)
    base.diffusion_model.load_state_dict(state)
    base.diffusion_model.eval()
    return comfy.model_patcher.ModelPatcher(base, load_device=device,
                                            offload_device=comfy.model_management.unet_offload_device())


def conditioning(label: int | None):
    """ComfyUI CONDITIONING for one class (``None``: the null class, same as ConditioningZeroOut)."""
    return [[one_hot([label]), {}]]


def net_of(model) -> DigitNet:
    return model.model.diffusion_model


# -- the judge ------------------------------------------------------------------------------------

def judge():
    """An RBF SVC on the flattened 16x16 training pictures (fitted once per process)."""
    if "judge" not in _CACHE:
        from sklearn.svm import SVC

        x, y, splits = dataset()
        clf = SVC(C=10.0, gamma="scale")
        clf.fit(x[splits["train"]].flatten(1).numpy(), y[splits["train"]].numpy())
        _CACHE["judge"] = clf
    return _CACHE["judge"]


def classify(images: torch.Tensor) -> torch.Tensor:
    """Judge's labels for IMAGE ``(B,16,16,3)`` or grey ``(B,16,16)`` pictures."""
    grey = images[..., :3].mean(-1) if images.ndim == 4 else images
    return torch.tensor(judge().predict(grey.flatten(1).to(torch.float32).numpy()), dtype=torch.int64)


def judge_accuracy(split: str = "test") -> float:
    x, y, splits = dataset()
    return float((classify(x[splits[split]]) == y[splits[split]]).float().mean())
