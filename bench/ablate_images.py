"""Which pipeline settings help at batch 8 on a GPU? Each variant side by side in one process.

Same SD 1.5-architecture pipeline as bench_images (random weights, fp16, 512x512, 25 steps,
guidance 7.5); a batch of 8 prompts per call, median of 3 calls after a warm-up.

    HF_HUB_OFFLINE=1 python -m bench.ablate_images
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_images import GUIDANCE, SIZE, STEPS, build_sd15


def per_image(pipe, batch: int = 8) -> float:  # noqa: ANN001
    prompts = [f"a photo of a fox number {i}" for i in range(batch)]

    def once() -> float:
        generators = [torch.Generator("cuda").manual_seed(i) for i in range(batch)]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pipe(
            prompts,
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            height=SIZE,
            width=SIZE,
            generator=generators,
            output_type="pil",
        )
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    once()
    return statistics.median(once() for _ in range(3)) / batch


def main() -> None:
    from diffusers import StableDiffusionPipeline

    path = build_sd15(Path(tempfile.mkdtemp()))
    pipe = StableDiffusionPipeline.from_pretrained(path, dtype=torch.float16).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    base = per_image(pipe)
    print(f"plain batch of 8: {base:.3f} s/image", flush=True)
    torch.backends.cudnn.benchmark = True
    print(f"+ cudnn.benchmark: {per_image(pipe):.3f}", flush=True)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    print(f"+ channels_last: {per_image(pipe):.3f}", flush=True)
    pipe.fuse_qkv_projections()
    print(f"+ fused qkv: {per_image(pipe):.3f}", flush=True)
    t0 = time.perf_counter()
    pipe.unet = torch.compile(pipe.unet, mode="default")
    per_image(pipe, 8)
    print(f"compile (default mode) warm-up: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"+ torch.compile default: {per_image(pipe):.3f}", flush=True)


if __name__ == "__main__":
    main()
