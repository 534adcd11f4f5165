"""Local Stable Diffusion through diffusers, run in a worker thread.

Loads a Hugging Face id or local folder (`from_pretrained`, SD 1.5 and SDXL via the
auto pipeline) or one checkpoint file (`from_single_file`). Picks CUDA, then Apple
MPS, then the CPU; half precision on GPUs, float32 on the CPU; PyTorch's SDPA
attention; optional torch.compile of the UNet and VAE decoder with its warm-up cost logged.
torch and diffusers are imported only when the generator loads.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from brain.config import DiffusersConfig
from brain.errors import FeatureUnavailable, MombotError
from brain.images.queue import BatchResult, StepFn
from brain.images.requests import GeneratedImage, ImageRequest

log = logging.getLogger(__name__)

SAFETY_BLOCKED = "The safety checker blocked that image; try another prompt."

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
SCHEDULERS = {
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",
}


def pick_device(wanted: str) -> str:
    import torch

    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(wanted: str, device: str) -> Any:
    import torch

    if wanted == "auto":
        return torch.float16 if device in ("cuda", "mps") else torch.float32
    return getattr(torch, wanted)


class DiffusersBackend:
    """Owns one diffusers pipeline; `ImageQueue` makes sure only one batch runs at a time."""

    def __init__(
        self,
        config: DiffusersConfig,
        *,
        max_batch: int = 8,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        if not config.model:
            raise FeatureUnavailable("images.diffusers.model is empty: name a model to draw with.")
        self.config = config
        self.max_batch = max_batch
        self._progress = progress or (lambda text: None)
        self._pipe: Any = None
        self._lock = threading.Lock()
        # One thread owns the pipeline: diffusers pipelines and CUDA graphs are not thread-safe.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffusers")
        self.device = ""
        self.load_seconds: float | None = None
        self.compile_seconds: float | None = None
        self.loras = LoraSwitch(config.local_files_only)

    def shape_key(self, request: ImageRequest) -> Hashable:
        # One LoRA setting per pipeline call: requests with different LoRAs are not batched.
        return (
            self.config.model,
            request.width,
            request.height,
            request.steps,
            request.guidance,
            request.lora,
            request.lora_scale,
        )

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def load(self) -> None:
        if self._pipe is None:
            await self._in_thread(self._load_blocking)

    def _load_blocking(self) -> None:
        with self._lock:
            if self._pipe is not None:
                return
            started = time.monotonic()
            self._progress(f"Loading image model {self.config.model}...")
            if self.config.local_files_only:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                pipe = self._from_source()
            except (OSError, ValueError) as exc:
                raise MombotError(
                    "I could not load the image model; the details are in the bot's log.",
                    detail=f"loading {self.config.model}: {exc}",
                ) from exc
            self._configure(pipe)
            self._pipe = pipe
            self.load_seconds = time.monotonic() - started
            log.info("image model loaded on %s in %.1f s", self.device, self.load_seconds)
        if self.config.compile:  # outside the lock: the warm-up renders, which takes it again
            self._compile()

    def _from_source(self) -> Any:
        import diffusers

        self.device = pick_device(self.config.device)
        dtype = pick_dtype(self.config.dtype, self.device)
        source = self.config.model
        common: dict[str, Any] = {"dtype": dtype, "local_files_only": self.config.local_files_only}
        if not self.config.safety_checker:
            common.update(safety_checker=None, requires_safety_checker=False)
        if source.lower().endswith(SINGLE_FILE_SUFFIXES):
            if not Path(source).is_file():
                raise FileNotFoundError(f"no checkpoint file at {source}")
            cls = (
                diffusers.StableDiffusionXLPipeline
                if _is_sdxl(source)
                else diffusers.StableDiffusionPipeline
            )
            if self.config.single_file_config:
                common["config"] = self.config.single_file_config
            if cls is diffusers.StableDiffusionXLPipeline:
                common.pop("safety_checker", None)
                common.pop("requires_safety_checker", None)
            return cls.from_single_file(source, **common)
        try:
            return diffusers.AutoPipelineForText2Image.from_pretrained(source, **common)
        except TypeError:  # pipelines without a safety checker (SDXL) refuse the keyword
            common.pop("safety_checker", None)
            common.pop("requires_safety_checker", None)
            return diffusers.AutoPipelineForText2Image.from_pretrained(source, **common)

    def _configure(self, pipe: Any) -> None:
        import diffusers
        import torch

        name = "lcm" if self.config.lcm_lora else self.config.scheduler
        if name != "default":
            scheduler_cls = getattr(diffusers, SCHEDULERS[name])
            pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
        if self.config.lcm_lora:
            pipe.load_lora_weights(
                self.config.lcm_lora, local_files_only=self.config.local_files_only
            )
            pipe.fuse_lora()
            pipe.unload_lora_weights()  # fused into the weights; character LoRAs come on top
        pipe.to(self.device)
        # channels-last was measured slower here (0.216 vs 0.196 s/image at batch 8 on an H100).
        if self.device == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            if hasattr(pipe, "fuse_qkv_projections"):
                pipe.fuse_qkv_projections()
        pipe.set_progress_bar_config(disable=True)

    def _compile(self) -> None:
        import torch
        import torch._inductor.config as inductor

        started = time.monotonic()
        self._progress("Compiling the image model (one-time warm-up)...")
        # diffusers' speed guide sets these two; its coordinate-descent tuning is left off
        # because its search ran for over 8 minutes on an H100 without finishing.
        inductor.conv_1x1_as_mm = True
        inductor.epilogue_fusion = False
        mode = self.config.compile_mode
        unet = self._pipe.unet
        unet.forward = _graph_safe(
            torch.compile(unet.forward, mode=mode, fullgraph=True, dynamic=False),
            cuda_graphs=mode in ("reduce-overhead", "max-autotune"),
        )
        # The VAE output is read after the call returns, so it stays out of CUDA graphs.
        vae_mode = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}.get(
            mode, mode
        )
        self._pipe.vae.decode = torch.compile(
            self._pipe.vae.decode, mode=vae_mode, fullgraph=True, dynamic=False
        )
        size = self.config.compile_warmup_size
        for batch in self.config.compile_warmup_batches:
            warm = [
                ImageRequest("warm-up", steps=2, width=size, height=size, seed=i)
                for i in range(batch)
            ]
            self._render(warm, lambda step, total: None)
        self.compile_seconds = time.monotonic() - started
        log.info(
            "torch.compile warm-up took %.1f s for batch sizes %s",
            self.compile_seconds,
            self.config.compile_warmup_batches,
        )

    async def run_batch(self, requests: list[ImageRequest], on_step: StepFn) -> list[BatchResult]:
        await self.load()
        started = time.monotonic()
        images = await self._in_thread(self._render, requests, on_step)
        rendered = time.monotonic()
        # PNG encoding is CPU work: do it in parallel, off the pipeline's thread, which is free
        # for the next batch meanwhile. A flagged image (None) is never encoded.
        pngs = await asyncio.gather(
            *(asyncio.to_thread(_png, image) for image in images if image is not None)
        )
        log.debug(
            "batch of %d: rendered in %.3f s, PNG-encoded in %.3f s",
            len(requests),
            rendered - started,
            time.monotonic() - rendered,
        )
        encoded = iter(pngs)
        return [
            MombotError(SAFETY_BLOCKED)
            if image is None
            else GeneratedImage(
                next(encoded), image.shape[1], image.shape[0], request.seed, request.prompt
            )
            for request, image in zip(requests, images, strict=True)
        ]

    async def aclose(self) -> None:
        """Let a batch under way end, then stop the pipeline's thread and drop the model."""
        await asyncio.to_thread(self._thread.shutdown, wait=True, cancel_futures=True)
        self._pipe = None

    def _render(self, requests: list[ImageRequest], on_step: StepFn) -> list[Any]:
        """Run the pipeline on one batch; returns height x width x 3 uint8 arrays.

        An image the safety checker flagged is None: only its own request fails.

        The pipeline returns float images on the device; they become bytes there too, with
        the same rounding as diffusers' own PIL conversion, so one small copy leaves the GPU
        and the conversion to PIL happens in the PNG threads, off this one.
        """
        import torch

        first = requests[0]
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [
            torch.Generator(device=generator_device).manual_seed(r.seed) for r in requests
        ]

        def step_end(
            pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
        ) -> dict[str, Any]:
            on_step(step + 1, first.steps)
            return tensors

        with self._lock, torch.inference_mode():
            self.loras.use(self._pipe, first.lora, first.lora_scale)
            output = self._pipe(
                prompt=[r.prompt for r in requests],
                negative_prompt=[r.negative_prompt for r in requests],
                width=first.width,
                height=first.height,
                num_inference_steps=first.steps,
                guidance_scale=first.guidance,
                generator=generators,
                callback_on_step_end=step_end,
                output_type="pt",
            )
            pixels = (output.images.float() * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        flagged = getattr(output, "nsfw_content_detected", None) or [False] * len(requests)
        if any(flagged):
            log.info(
                "the safety checker blocked %d of %d images", sum(map(bool, flagged)), len(flagged)
            )
        return [None if bad else image for image, bad in zip(pixels.numpy(), flagged, strict=True)]


class LoraSwitch:
    """The character LoRAs of one pipeline: each loaded once, one active per pipeline call."""

    def __init__(self, local_files_only: bool) -> None:
        self.local_files_only = local_files_only
        self.loaded: dict[str, str] = {}  # LoRA source → adapter name
        self._active: tuple[str, float] = ("", 1.0)

    def use(self, pipe: Any, lora: str, scale: float) -> None:
        """Switch `pipe` to this batch's LoRA, loading it the first time; "" for none."""
        if (lora, scale) == self._active:
            return
        if not lora:
            pipe.disable_lora()
        else:
            if lora not in self.loaded:
                _unfuse_attention_projections(pipe)
                name = f"character_lora_{len(self.loaded)}"
                try:
                    pipe.load_lora_weights(
                        lora, adapter_name=name, local_files_only=self.local_files_only
                    )
                except (OSError, ValueError) as exc:
                    raise MombotError(
                        "I could not load this character's LoRA; the details are in the bot's log.",
                        detail=f"loading LoRA {lora}: {exc}",
                    ) from exc
                self.loaded[lora] = name
            pipe.enable_lora()
            pipe.set_adapters([self.loaded[lora]], adapter_weights=[scale])
        self._active = (lora, scale)


def _unfuse_attention_projections(pipe: Any) -> None:
    """A fused q/k/v projection (set on CUDA for speed) would bypass a LoRA's to_q/to_k/to_v
    layers and silently draw without the LoRA: split them again before the first LoRA loads."""
    if getattr(pipe, "fusing_unet", False):
        pipe.unfuse_qkv_projections()
        log.info("attention projections unfused, so that character LoRAs apply")


def _graph_safe(compiled: Callable[..., Any], *, cuda_graphs: bool) -> Callable[..., Any]:
    """Wrap a compiled UNet forward so that its outputs outlive the next call.

    dynamic=False gives each batch size its own static graph: left to guess, torch.compile
    makes the batch dimension symbolic on the second size it sees, and those graphs ran
    slower on an H100. Under CUDA graphs an output lives in the graph's memory pool and the
    next call overwrites it; some schedulers (PNDM without guidance) keep earlier outputs,
    so each output is copied out (half a megabyte at batch 16).
    """
    if not cuda_graphs:
        return compiled
    import torch
    from torch.utils._pytree import tree_map

    def forward(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return tree_map(
            lambda t: t.clone() if isinstance(t, torch.Tensor) else t, compiled(*args, **kwargs)
        )

    return forward


def _png(pixels: Any) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _is_sdxl(path: str) -> bool:
    """SDXL checkpoints carry a second text encoder under conditioner.embedders.1."""
    if not path.endswith(".safetensors"):
        return False
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return any(key.startswith("conditioner.embedders.1") for key in handle.keys())
