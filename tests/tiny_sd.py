"""A tiny Stable Diffusion pipeline built from configs (random weights), saved for real loading."""

from __future__ import annotations

import json
from pathlib import Path


def byte_tokenizer_files(folder: Path) -> tuple[Path, Path]:
    """A small CLIP BPE vocabulary of printable ASCII characters: enough to tokenize offline."""
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for code in range(33, 127):
        for token in (chr(code), chr(code) + "</w>"):
            vocab.setdefault(token, len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_pipeline(folder: Path) -> Path:
    """Save a tiny SD 1.5-shaped pipeline (UNet, VAE, CLIP text model, tokenizer, DDIM)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            vocab_size=1000,
        )
    )
    vocab, merges = byte_tokenizer_files(folder / "_tokenizer")
    tokenizer = CLIPTokenizer(vocab_file=str(vocab), merges_file=str(merges), model_max_length=77)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target = folder / "tiny-sd"
    pipe.save_pretrained(target)
    return target


def build_tiny_lora(pipeline: Path, target: Path, seed: int = 1) -> Path:
    """A LoRA for the tiny pipeline's UNet attention, with random (non-zero) weights.

    Saved in diffusers' LoRA format by the pipeline's own `save_lora_weights`, as a
    community LoRA file would be loaded: one `.safetensors` in a folder.
    """
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(pipeline / "unet")
    unet.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights=False,
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
    )
    # Random B as well as A (init_lora_weights=False), made 8 times larger, so the LoRA
    # visibly changes even two-step images of a random UNet.
    layers = {
        key: value * 8 if "lora_B" in key else value
        for key, value in get_peft_model_state_dict(unet).items()
    }
    target.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        target, unet_lora_layers=layers, safe_serialization=True
    )
    (file,) = target.glob("*.safetensors")
    return file
