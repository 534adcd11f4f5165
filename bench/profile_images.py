"""Where does a batch of 8 images spend its time on the GPU, and which compile settings help?

Same SD 1.5-architecture pipeline as bench_images (random weights, fp16, 512x512, 25 steps,
guidance 7.5, batch of 8 prompts, so the UNet runs at batch 16 with classifier-free guidance).
Times each stage on its own (text encoding, one UNet step, VAE decode, conversion to PIL) and
the whole call, first eager and then under each compile variant asked for, in one process.

    HF_HUB_OFFLINE=1 python -m bench.profile_images --variants default,max-autotune
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.bench_images import GUIDANCE, SIZE, STEPS, build_sd15

BATCH = 8


def cuda_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def stages(pipe: Any, label: str, profile: bool = False) -> float:
    prompts = [f"a photo of a fox number {i}" for i in range(BATCH)]
    device = torch.device("cuda")
    with torch.inference_mode():
        embeds, negative = pipe.encode_prompt(
            prompts, device, 1, True, negative_prompt=[""] * BATCH
        )
        context = torch.cat([negative, embeds])
        latents = torch.randn(
            2 * BATCH, 4, SIZE // 8, SIZE // 8, device=device, dtype=torch.float16
        )
        timestep = torch.tensor(500, device=device)
        pipe.scheduler.set_timesteps(STEPS, device=device)
        scaled = latents[:BATCH] / pipe.vae.config.scaling_factor

        def whole() -> None:
            generators = [torch.Generator("cuda").manual_seed(i) for i in range(BATCH)]
            pipe(
                prompts,
                num_inference_steps=STEPS,
                guidance_scale=GUIDANCE,
                height=SIZE,
                width=SIZE,
                generator=generators,
                output_type="pil",
            )

        decoded = pipe.vae.decode(scaled, return_dict=False)[0]
        timings = {
            "text encoding": cuda_time(
                lambda: pipe.encode_prompt(prompts, device, 1, True, negative_prompt=[""] * BATCH)
            ),
            "one UNet step (batch 16)": cuda_time(
                lambda: pipe.unet(
                    latents, timestep, encoder_hidden_states=context, return_dict=False
                ),
                repeats=10,
            ),
            "VAE decode (8 images)": cuda_time(lambda: pipe.vae.decode(scaled, return_dict=False)),
            "to PIL (8 images)": cuda_time(
                lambda: pipe.image_processor.postprocess(decoded, output_type="pil")
            ),
            "whole call": cuda_time(whole),
        }
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof, torch.inference_mode():
            for _ in range(3):
                pipe.unet(latents, timestep, encoder_hidden_states=context, return_dict=False)
            torch.cuda.synchronize()
        print(
            prof.key_averages().table(
                sort_by="cuda_time_total", row_limit=18, max_name_column_width=70
            ),
            flush=True,
        )
    unet_total = timings["one UNet step (batch 16)"] * STEPS
    print(f"--- {label}", flush=True)
    for name, seconds in timings.items():
        print(f"  {name}: {seconds * 1000:.1f} ms", flush=True)
    print(
        f"  25 UNet steps: {unet_total * 1000:.0f} ms; whole call per image: "
        f"{timings['whole call'] / BATCH:.3f} s",
        flush=True,
    )
    return timings["whole call"] / BATCH


def set_inductor_flags() -> None:
    """The settings diffusers' own speed guide uses with torch.compile."""
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True
    inductor.epilogue_fusion = False
    # coordinate_descent_tuning is also in that guide, but its search took over 8 minutes
    # for this UNet on an H100 without finishing, so it is left off.


def main() -> None:
    from diffusers import StableDiffusionPipeline

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--variants",
        default="default",
        help="comma-separated torch.compile modes to try after the eager run",
    )
    parser.add_argument("--no-flags", action="store_true", help="leave inductor's settings alone")
    parser.add_argument("--skip-eager", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="print the top CUDA kernels of 3 UNet steps"
    )
    parser.add_argument(
        "--fp8",
        action="store_true",
        help="then quantize the UNet's linear layers to float8 (torchao, per-tensor) and "
        "measure once more under compile mode=default",
    )
    args = parser.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    path = build_sd15(Path(tempfile.mkdtemp()))
    pipe = StableDiffusionPipeline.from_pretrained(path, dtype=torch.float16).to("cuda")
    pipe.set_progress_bar_config(disable=True)
    torch.backends.cudnn.benchmark = True
    pipe.fuse_qkv_projections()
    if not args.skip_eager:
        stages(pipe, "eager (cuDNN autotune, fused QKV)", args.profile)
    if not args.no_flags:
        set_inductor_flags()
    unet, decode = pipe.unet, pipe.vae.decode
    for mode in [m for m in args.variants.split(",") if m]:
        torch._dynamo.reset()
        started = time.perf_counter()
        pipe.unet = torch.compile(unet, mode=mode, fullgraph=True)
        pipe.vae.decode = torch.compile(decode, mode=mode, fullgraph=True)
        per_image = stages(pipe, f"compile mode={mode} (UNet and VAE decode)", args.profile)
        print(
            f"  compile + measuring took {time.perf_counter() - started:.0f} s; "
            f"{per_image:.3f} s per image",
            flush=True,
        )
    if args.fp8:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, quantize_

        torch._dynamo.reset()
        quantize_(
            unet, Float8DynamicActivationFloat8WeightConfig()
        )  # per-tensor: per-row needs bf16
        started = time.perf_counter()
        pipe.unet = torch.compile(unet, mode="default", fullgraph=True)
        pipe.vae.decode = torch.compile(decode, mode="default", fullgraph=True)
        per_image = stages(pipe, "float8 UNet linears + compile mode=default", args.profile)
        print(
            f"  compile + measuring took {time.perf_counter() - started:.0f} s; "
            f"{per_image:.3f} s per image",
            flush=True,
        )


if __name__ == "__main__":
    main()
