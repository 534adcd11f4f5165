"""Stable Diffusion throughput on a GPU: diffusers' plain pipeline vs mombot's generator.

SD 1.5 architecture (UNet 860M, VAE), 512x512, 25 steps, guidance 7.5, random weights
(the FLOPs are the same as a trained model's), float16 on CUDA. The text encoder is a
1-layer CLIP with SD's 768-wide output and the tokenizer a small offline one: text
encoding is negligible next to 25 UNet steps, and nothing can be downloaded.

  (a) diffusers' plain fp16 pipeline, one request at a time
  (b) mombot's DiffusersBackend behind its ImageQueue: 1 request, then 8 and 16 concurrent

    HF_HUB_OFFLINE=1 python -m bench.bench_images [--compile [MODE]] [--images 8]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from brain.config import DiffusersConfig, QueueConfig
from brain.images.backends.local import DiffusersBackend
from brain.images.queue import ImageQueue
from brain.images.requests import ImageRequest

STEPS, SIZE, GUIDANCE = 25, 512, 7.5


def build_sd15(folder: Path) -> Path:
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.tiny_sd import byte_tokenizer_files

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=1,
            num_attention_heads=12,
            vocab_size=1000,
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
        )
    )
    vocab, merges = byte_tokenizer_files(folder / "_tokenizer")
    tokenizer = CLIPTokenizer(vocab_file=str(vocab), merges_file=str(merges), model_max_length=77)
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.to(torch.float16)
    target = folder / "sd15-random"
    pipe.save_pretrained(target)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"UNet parameters: {params:.0f} M")
    return target


def timed(fn) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def plain_baseline(path: Path, images: int) -> float:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path, dtype=torch.float16).to("cuda")
    pipe.set_progress_bar_config(disable=True)

    def one(seed: int) -> None:
        pipe(
            "a photo of a red fox",
            num_inference_steps=STEPS,
            guidance_scale=GUIDANCE,
            height=SIZE,
            width=SIZE,
            generator=torch.Generator("cuda").manual_seed(seed),
        )

    timed(lambda: one(0))  # warm-up
    times = [timed(lambda s=s: one(s)) for s in range(1, images + 1)]
    pipe.to("cpu")  # free the GPU for the next variant
    torch.cuda.empty_cache()
    return statistics.median(times)


async def guidance_one_matches_eager(path: Path, backend: DiffusersBackend) -> None:
    """PNDM keeps earlier UNet outputs when guidance is 1 (no CFG arithmetic in between):
    under CUDA graphs those would be overwritten unless copied out. Compare with eager."""
    import io

    import numpy as np
    from PIL import Image

    request = ImageRequest(
        "a photo of a fox", width=SIZE, height=SIZE, steps=10, guidance=1.0, seed=7
    )
    eager = DiffusersBackend(DiffusersConfig(model=str(path), device="cuda", local_files_only=True))
    images = [(await b.run_batch([request], lambda s, t: None))[0] for b in (backend, eager)]
    a, b = (np.asarray(Image.open(io.BytesIO(i.png)), dtype=np.int16) for i in images)
    print(
        f"guidance 1.0, compiled vs eager: max pixel difference {np.abs(a - b).max()}, "
        f"mean {np.abs(a - b).mean():.2f}",
        flush=True,
    )


def where_time_goes(run: Callable[[], object]) -> None:
    """Profile one burst: GPU busy time against wall time, the host's waits, its costliest ops."""
    from torch.profiler import ProfilerActivity, profile

    started = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
    wall_ms = (time.perf_counter() - started) * 1000
    events = prof.key_averages()
    gpu_ms = sum(e.self_device_time_total for e in events) / 1000
    print(
        f"profiled burst: wall {wall_ms:.0f} ms (with the profiler's own cost), "
        f"GPU kernels {gpu_ms:.0f} ms",
        flush=True,
    )
    waits = [
        e
        for e in events
        if "Synchronize" in e.key or "_local_scalar_dense" in e.key or "cudaMemcpy" in e.key
    ]
    for event in waits:
        print(
            f"  host wait {event.key}: {event.count}x, {event.cpu_time_total / 1000:.1f} ms",
            flush=True,
        )
    print(
        prof.key_averages().table(
            sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=60
        ),
        flush=True,
    )


async def ours(
    path: Path,
    compile_mode: str,
    rounds: int,
    sizes: list[int],
    check_guidance_one: bool = False,
    scheduler: str = "",
    profile: bool = False,
) -> dict[str, float]:
    compile_unet = bool(compile_mode)
    config = DiffusersConfig(
        model=str(path),
        device="cuda",
        local_files_only=True,
        compile=compile_unet,
        compile_mode=compile_mode or "default",
        compile_warmup_batches=sizes,
        **({"scheduler": scheduler} if scheduler else {}),
    )
    backend = DiffusersBackend(config, max_batch=16, progress=print)
    started = time.perf_counter()
    await backend.load()
    print(
        f"load{' + compile warm-up' if compile_unet else ''}: {time.perf_counter() - started:.1f} s"
    )
    queue = ImageQueue(
        backend, QueueConfig(max_batch=16, batch_window_ms=20, per_user=16, max_queue=64)
    )

    async def burst(n: int, seed: int) -> float:
        async def nothing(text: str) -> None:
            return None

        requests = [
            ImageRequest(
                f"a photo of a fox number {i}",
                width=SIZE,
                height=SIZE,
                steps=STEPS,
                guidance=GUIDANCE,
                seed=seed + i,
                user_id=f"user{i}",
            )
            for i in range(n)
        ]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        await asyncio.gather(*(queue.generate(r, nothing) for r in requests))
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    results: dict[str, float] = {}
    for n in sizes:
        t0 = time.perf_counter()
        await burst(n, 1000)  # warm-up for this batch shape (compiled at load when on)
        print(f"warm-up for {n} concurrent: {time.perf_counter() - t0:.1f} s", flush=True)
        times = [await burst(n, 2000 + 100 * r) for r in range(rounds)]
        results[f"{n} concurrent"] = statistics.median(times)
        if profile:
            loop = asyncio.get_running_loop()
            one_burst = functools.partial(asyncio.run_coroutine_threadsafe, burst(n, 3000), loop)
            await loop.run_in_executor(None, where_time_goes, lambda run=one_burst: run().result())
    if check_guidance_one:
        await guidance_one_matches_eager(path, backend)
    print(f"batches run: {list(queue.batches_run)}")
    return results


def main() -> None:
    logging.basicConfig(format="  %(message)s")
    logging.getLogger("brain.images.backends.local").setLevel(logging.DEBUG)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default="",
        help="torch.compile mode (default if named without one)",
    )
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--check-guidance-one",
        action="store_true",
        help="compare a guidance-1.0 image of the compiled generator with eager",
    )
    parser.add_argument(
        "--scheduler",
        default="",
        help="images.diffusers.scheduler for (b); empty: the config's default",
    )
    parser.add_argument("--profile", action="store_true", help="profile one burst of each size")
    parser.add_argument("--sizes", default="1,8,16", help="concurrent requests to measure")
    args = parser.parse_args()
    print(torch.__version__, torch.cuda.get_device_name())
    path = build_sd15(Path(tempfile.mkdtemp()))
    if not args.skip_baseline:
        base = plain_baseline(path, args.images)
        print(f"(a) plain diffusers fp16, one at a time: {base:.3f} s per image", flush=True)
    sizes = [int(n) for n in args.sizes.split(",")]
    results = asyncio.run(
        ours(
            path,
            args.compile,
            args.rounds,
            sizes,
            args.check_guidance_one,
            args.scheduler,
            args.profile,
        )
    )
    for name, seconds in results.items():
        n = int(name.split()[0])
        line = f"(b) mombot, {name}: {seconds:.3f} s total, {seconds / n:.3f} s per image"
        if not args.skip_baseline:
            line += f", {base / (seconds / n):.2f}x the baseline's throughput"
        print(line, flush=True)


if __name__ == "__main__":
    main()
