"""One compiled UNet step at batch 16 (8 images with guidance) under several settings, side by side.

The SD 1.5 UNet (random weights, 512x512 latents) is built once; each variant gets a fresh copy,
is compiled with mode=default, and is timed over 20 steps with CUDA events (median). Its output
is compared with a float32 eager reference on the same inputs (relative L2 error).
Variants: fp16, channels_last, bf16, fp8 and fp8-fast (float8 linear layers in the transformer
blocks, bf16 elsewhere), and fp16-flash / fp16-efficient / fp16-cudnn (one SDPA kernel pinned).

    HF_HUB_OFFLINE=1 python -m bench.unet_variants --variants fp16,channels_last,bf16,fp8
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import time

import torch
from torch import nn

BATCH = 16  # 8 images, doubled by classifier-free guidance


def build_unet() -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    return unet.eval()


# Float8 for the transformer blocks' linear layers: an experiment kept here, not in mombot,
# because it measured slower than bfloat16 on the H100 (docs/BENCHMARKS.md).
FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max
SMALLEST_SCALE = 1e-12  # keeps an all-zero row from dividing by zero


def row_scales(matrix: torch.Tensor) -> torch.Tensor:
    """One float32 scale per row that maps the row's largest magnitude onto float8's largest."""
    return matrix.abs().amax(dim=-1, keepdim=True).float().clamp(min=SMALLEST_SCALE) / FLOAT8_MAX


class Float8Linear(nn.Module):
    """A linear layer whose weight is stored in float8 and multiplied with `torch._scaled_mm`."""

    def __init__(self, linear: nn.Linear, *, fast_accumulation: bool = False) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scales = row_scales(weight)  # (out, 1): one per output channel
        self.register_buffer("weight", (weight / scales).to(FLOAT8))
        self.register_buffer(
            "weight_scales", scales.t().contiguous()
        )  # (1, out), as _scaled_mm wants
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.fast_accumulation = fast_accumulation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scales = row_scales(rows)
        quantized = (rows.float() / scales).to(FLOAT8)
        # Row-wise scaling produces bfloat16 on CUDA; the cast back to x's type fuses with the bias.
        out = torch._scaled_mm(
            quantized,
            self.weight.t(),
            scale_a=scales,
            scale_b=self.weight_scales,
            out_dtype=torch.bfloat16,
            use_fast_accum=self.fast_accumulation,
        )
        out = out.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, float8"


def quantize_linears(unet: nn.Module, *, fast_accumulation: bool = False) -> int:
    """Swap every linear layer inside the UNet's transformer blocks for a Float8Linear.

    Returns how many were swapped. `_scaled_mm` needs both dimensions divisible by 16; the
    rare layer that is not keeps its precision.
    """
    swapped = 0
    for name, module in list(unet.named_modules()):
        if ".transformer_blocks." not in f".{name}.":
            continue
        for child_name, child in list(module.named_children()):
            if (
                isinstance(child, nn.Linear)
                and child.in_features % 16 == 0
                and child.out_features % 16 == 0
            ):
                setattr(
                    module, child_name, Float8Linear(child, fast_accumulation=fast_accumulation)
                )
                swapped += 1
    return swapped


def step_ms(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


KERNEL_KINDS = {
    "attention": ("fmha", "flash", "attention", "sdpa"),
    "convolution": ("conv", "fprop", "implicit", "dgrad", "winograd"),
    "matrix product": ("gemm", "nvjet", "cutlass", "mm_"),
    "fused elementwise and norms (Triton)": ("triton",),
}


def kernel_shares(fn, steps: int = 3) -> None:
    """Print the GPU time per step of each kind of kernel, and the ten costliest kernels."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    totals: dict[str, float] = {}
    for event in events:
        name = event.key.lower()
        kind = next(
            (k for k, words in KERNEL_KINDS.items() if any(w in name for w in words)), "other"
        )
        totals[kind] = totals.get(kind, 0.0) + event.device_time_total / 1000 / steps
    whole = sum(totals.values())
    for kind, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {kind}: {ms:.2f} ms per step ({ms / whole:.0%})", flush=True)
    for event in sorted(events, key=lambda e: -e.device_time_total)[:10]:
        print(
            f"    {event.device_time_total / 1000 / steps:6.2f} ms  {event.count // steps:3d}x  "
            f"{event.key[:90]}",
            flush=True,
        )


def attention_backend(variant: str) -> contextlib.AbstractContextManager[None]:
    """fp16-flash / fp16-efficient / fp16-cudnn pin SDPA's kernel; others leave PyTorch's choice."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }
    name = variant.rpartition("-")[2]
    return sdpa_kernel(backends[name]) if name in backends else contextlib.nullcontext()


def prepare(base: torch.nn.Module, variant: str) -> tuple[torch.nn.Module, torch.dtype]:
    dtype = torch.bfloat16 if variant.startswith(("bf16", "fp8")) else torch.float16
    unet = copy.deepcopy(base).to("cuda", dtype)
    unet.fuse_qkv_projections()
    if variant == "channels_last":
        unet.to(memory_format=torch.channels_last)
    if variant.startswith("fp8"):
        count = quantize_linears(unet, fast_accumulation=variant == "fp8-fast")
        print(f"  {count} linear layers in float8", flush=True)
    return unet, dtype


def main() -> None:
    import torch._inductor.config as inductor

    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", default="fp16,channels_last,bf16,fp8,fp8-fast")
    parser.add_argument(
        "--gemm-autotune",
        action="store_true",
        help="let inductor autotune the matrix products; it tunes the convolutions "
        "too, which took over 230 s on the H100",
    )
    parser.add_argument(
        "--cudnn-limit",
        type=int,
        default=None,
        help="cuDNN algorithms to try per convolution (0: all; PyTorch's default is 10)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="GPU time per kind of kernel, first variant"
    )
    args = parser.parse_args()
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    torch.backends.cudnn.benchmark = True
    if args.cudnn_limit is not None:
        torch.backends.cudnn.benchmark_limit = args.cudnn_limit
    inductor.conv_1x1_as_mm = True
    inductor.epilogue_fusion = False
    if args.gemm_autotune:
        inductor.max_autotune_gemm = True
    base = build_unet()
    torch.manual_seed(1)
    latents = torch.randn(BATCH, 4, 64, 64)
    context = torch.randn(BATCH, 77, 768)
    timestep = torch.tensor(500)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.inference_mode():
        reference = (
            copy.deepcopy(base)
            .to("cuda")(
                latents.cuda(),
                timestep.cuda(),
                encoder_hidden_states=context.cuda(),
                return_dict=False,
            )[0]
            .double()
        )
    torch.cuda.empty_cache()
    rows = []
    for variant in args.variants.split(","):
        torch._dynamo.reset()
        unet, dtype = prepare(base, variant)
        inputs = (latents.to("cuda", dtype), timestep.cuda())
        kwargs = {"encoder_hidden_states": context.to("cuda", dtype), "return_dict": False}
        if variant == "channels_last":
            inputs = (inputs[0].to(memory_format=torch.channels_last), inputs[1])
        compiled = torch.compile(unet, mode="default", fullgraph=True, dynamic=False)
        step = functools.partial(compiled, *inputs, **kwargs)
        with torch.inference_mode(), attention_backend(variant):
            started = time.perf_counter()
            out = step()[0]
            torch.cuda.synchronize()
            compile_s = time.perf_counter() - started
            error = ((out.double() - reference).norm() / reference.norm()).item()
            ms = step_ms(step)
            if args.profile and not rows:
                kernel_shares(step)
        rows.append((variant, ms, compile_s, error))
        print(
            f"{variant}: {ms:.2f} ms per step, compile {compile_s:.0f} s, "
            f"relative error {error:.2e}",
            flush=True,
        )
        del unet, compiled, step
        torch.cuda.empty_cache()
    first = rows[0][1]
    print("\n| variant | ms per UNet step (batch 16) | vs first | compile s | relative error |")
    print("|---|---|---|---|---|")
    for variant, ms, compile_s, error in rows:
        print(f"| {variant} | {ms:.2f} | {first / ms:.2f}x | {compile_s:.0f} | {error:.1e} |")


if __name__ == "__main__":
    main()
