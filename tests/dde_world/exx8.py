"""The Differential Diffusion authors' own pipeline, run from their file at test time (oracle tier).

exx8/differential-diffusion (Eran Levin, Ohad Fried: "Differential Diffusion: Giving Each Pixel Its Strength",
2024) has no licence file, so the pack commits none of its lines. This module reads their ``SD2/diff_pipe.py`` at
commit d78f3f3 from a git snapshot on this machine, checks it is that very file (its git blob id), imports the
text unchanged into a fresh module and runs their ``StableDiffusionDiffImg2ImgPipeline`` on latents.

Where the snapshot is: ``$DDE_EXX8_REPO`` (a git dir or a checkout), else :data:`DEFAULT_REPO` (what the agents'
``fetch github:exx8/differential-diffusion`` writes). Without it the tests that need it are skipped with a loud
line (tests/conftest.py, :func:`missing`).

Everything below is ours (the adapter), nothing of theirs is rewritten:

* :func:`renamed_imports`: two names their imports use that moved since (diffusers 0.42: ``randn_tensor`` lives in
  ``diffusers.utils.torch_utils``; transformers 5: ``CLIPFeatureExtractor`` is ``CLIPImageProcessor``), set under
  the old name only while their text executes, and only where missing.
* :class:`LatentVAE`: stands in for the VAE: ``encode(latent)`` gives the latent back, and its one-level
  ``block_out_channels`` makes their ``__init__`` set ``vae_scale_factor = 2 ** 0 = 1`` (the map is resized to the
  latent grid, the "image" passed in being the latent).
* :func:`pipeline`: their ``__init__``, ``check_inputs``, ``_encode_prompt`` (embeddings passed in; the text
  encoder only gives the dtype), ``get_timesteps``, ``prepare_latents``, ``prepare_extra_step_kwargs``,
  ``__call__`` and ``run_safety_checker`` (no checker) run as they are; the subclass overrides only
  ``decode_latents`` (no VAE decoder: the latents are the result; call with ``output_type="latent"``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.abc
import importlib.util
import linecache
import os
import subprocess
import types

COMMIT = "d78f3f3f5181d319c8a96234393d545cec7eba11"
PATH = "SD2/diff_pipe.py"
#: git's blob id of ``SD2/diff_pipe.py`` at :data:`COMMIT` (a file from anywhere else must hash to it)
BLOB = "3a85343f61a27578f6f68b29324423eec015c454"
REPO_ENV = "DDE_EXX8_REPO"
DEFAULT_REPO = "/work/.mirror/exx8+differential-diffusion/repo"
HOW_TO_GET = ("fetch github:exx8/differential-diffusion, or git clone https://github.com/exx8/differential-diffusion "
              f"and set {REPO_ENV} to the clone")

#: (module, old name, module, name now) for each name their imports use that has moved
MOVED = (("diffusers.utils", "randn_tensor", "diffusers.utils.torch_utils", "randn_tensor"),
         ("transformers", "CLIPFeatureExtractor", "transformers", "CLIPImageProcessor"))


def _blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@functools.lru_cache(maxsize=None)
def find_source() -> tuple[str | None, str]:
    """``(their file's text, where it came from)``, or ``(None, why not)``."""
    root = os.environ.get(REPO_ENV) or DEFAULT_REPO
    if not os.path.isdir(root):
        return None, f"{root} does not exist"
    data = None
    for where in (["--git-dir", root], ["-C", root]):        # a (bare) git dir, else a checkout
        try:
            shown = subprocess.run(["git", *where, "show", f"{COMMIT}:{PATH}"], capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            break
        if shown.returncode == 0:
            data = shown.stdout
            break
    if data is None and os.path.isfile(os.path.join(root, PATH)):   # a checkout without git
        with open(os.path.join(root, PATH), "rb") as f:
            data = f.read()
    if data is None:
        return None, f"{root} holds no {PATH} at commit {COMMIT[:7]}"
    if _blob_id(data) != BLOB:
        return None, (f"{root}: {PATH} is not the file of commit {COMMIT[:7]} "
                      f"(git blob {_blob_id(data)[:7]}, want {BLOB[:7]})")
    return data.decode("utf-8"), f"{root} (commit {COMMIT[:7]}, {PATH})"


def missing() -> str | None:
    """The loud line when their file cannot be found, else None."""
    text, why = find_source()
    if text is not None:
        return None
    return ("EXX8 CODE NOT FOUND: the oracle tests against the Differential Diffusion authors' own code are SKIPPED ("
            + why + "; get it with: " + HOW_TO_GET + ")")


@contextlib.contextmanager
def renamed_imports():
    """The old names of :data:`MOVED` on their modules while the block runs (only those missing), removed after."""
    added = []
    try:
        for old_module, old_name, new_module, new_name in MOVED:
            now = getattr(importlib.import_module(new_module), new_name)
            module = importlib.import_module(old_module)   # after: transformers' lazy import can replace its module
            if not hasattr(module, old_name):
                setattr(module, old_name, now)
                added.append((module, old_name))
        yield
    finally:
        for module, old_name in added:
            delattr(module, old_name)


class _TextLoader(importlib.abc.SourceLoader):
    """Serves their file's text to :mod:`importlib` (the module is built by Python's own import machinery)."""

    def __init__(self, text: str, filename: str):
        self.text, self.filename = text, filename

    def get_filename(self, fullname: str) -> str:
        return self.filename

    def get_data(self, path: str) -> bytes:
        return self.text.encode("utf-8")


@functools.lru_cache(maxsize=None)
def load() -> types.ModuleType:
    """Their ``SD2/diff_pipe.py`` imported as it is into a fresh module (imports diffusers and transformers)."""
    text, why = find_source()
    if text is None:
        raise FileNotFoundError(missing())
    filename = f"<exx8/differential-diffusion@{COMMIT[:7]}:{PATH}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)   # tracebacks show their lines
    spec = importlib.util.spec_from_loader("exx8_sd2_diff_pipe", _TextLoader(text, filename), origin=filename)
    module = importlib.util.module_from_spec(spec)
    with renamed_imports():
        spec.loader.exec_module(module)
    return module


class LatentVAE:
    """Stands in for their ``AutoencoderKL``: ``encode(latent).latent_dist.sample(generator)`` is the latent itself;
    ``config.scaling_factor`` is the model's; one level in ``block_out_channels``: their ``vae_scale_factor`` is 1."""

    def __init__(self, scaling_factor: float):
        self.config = types.SimpleNamespace(scaling_factor=scaling_factor, block_out_channels=(1,))

    def encode(self, latent):
        return types.SimpleNamespace(latent_dist=types.SimpleNamespace(sample=lambda generator=None: latent))


@functools.lru_cache(maxsize=None)
def _latent_pipeline_class():
    class LatentDiffImg2ImgPipeline(load().StableDiffusionDiffImg2ImgPipeline):
        """Their pipeline with the one step that needs a VAE decoder replaced: the result is the latents."""

        def decode_latents(self, latents):
            return latents

    return LatentDiffImg2ImgPipeline


def pipeline(unet, text_encoder, tokenizer, scheduler, scaling_factor: float):
    """Their pipeline built by their own ``__init__`` on diffusers' UNet, transformers' CLIP and ``scheduler``.

    Call it with ``prompt_embeds``, ``negative_prompt_embeds``, ``image`` = the latent (model units / scaling
    factor), ``map`` (their polarity: white = keep), ``output_type="latent"``, ``return_dict=False``: it returns
    ``(latents in model units, None)``.
    """
    pipe = _latent_pipeline_class()(vae=LatentVAE(scaling_factor), text_encoder=text_encoder, tokenizer=tokenizer,
                                    unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                    requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
