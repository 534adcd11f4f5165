"""Write a diffusers SD 1.5-shaped folder as one original (LDM) checkpoint file.

Community checkpoints (`.safetensors` from model sites) use the original Stable Diffusion
key names. No such file can be downloaded here, so the tests make one from the tiny
pipeline: each diffusers weight is renamed to its original name, and the VAE's attention
weights get back their 1×1-convolution shape. Loading the file through diffusers'
`from_single_file` then exercises its real conversion path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

UNET_RESNET_PARTS = {
    "norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
    "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection",
}  # fmt: skip
UNET_TOP_LEVEL = {
    "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
}  # fmt: skip
VAE_ATTENTION_PARTS = {
    "group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
}  # fmt: skip


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    (file,) = folder.glob("*.safetensors")
    return load_file(file)


def _replace_first(key: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if key.startswith(new + ".") or f".{new}." in key:
            return key.replace(new, old, 1)
    return key


def unet_key(key: str, layers_per_block: int) -> str:
    """The original name of one diffusers UNet weight (SD 1.5 layout)."""
    stride = layers_per_block + 1  # each down block: its layers, then a downsampler
    parts = key.split(".")
    for new, old in UNET_TOP_LEVEL.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    if parts[0] == "down_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":  # down_blocks.i.downsamplers.0.conv.* → input_blocks.k.0.op.*
            return f"input_blocks.{1 + block * stride + layers_per_block}.0.op." + ".".join(
                parts[5:]
            )
        index = 1 + block * stride + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"input_blocks.{index}.0." + _replace_first(rest, UNET_RESNET_PARTS)
        return f"input_blocks.{index}.1.{rest}"
    if parts[0] == "up_blocks":
        block, kind = int(parts[1]), parts[2]
        if kind == "upsamplers":  # after the block's last layer: slot 2 with attention, else 1
            return f"output_blocks.{block * stride + layers_per_block}.{{slot}}.conv." + ".".join(
                parts[5:]
            )
        index = block * stride + int(parts[3])
        rest = ".".join(parts[4:])
        if kind == "resnets":
            return f"output_blocks.{index}.0." + _replace_first(rest, UNET_RESNET_PARTS)
        return f"output_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        kind, number, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        if kind == "resnets":
            return f"middle_block.{2 * number}." + _replace_first(rest, UNET_RESNET_PARTS)
        return f"middle_block.1.{rest}"
    raise ValueError(f"no original name known for UNet weight {key}")


def vae_key(key: str, up_blocks: int) -> str:
    """The original name of one diffusers VAE weight."""
    parts = key.split(".")
    side = parts[0]
    if parts[1] in ("down_blocks", "up_blocks"):
        block = int(parts[2])
        if side == "decoder":
            block = up_blocks - 1 - block  # the original decoder counts its blocks backwards
        stage = "down" if side == "encoder" else "up"
        if parts[3] in ("downsamplers", "upsamplers"):
            sampler = "downsample" if side == "encoder" else "upsample"
            return f"{side}.{stage}.{block}.{sampler}.conv." + ".".join(parts[6:])
        rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.{stage}.{block}.block.{parts[4]}.{rest}"
    if parts[1] == "mid_block":
        rest = ".".join(parts[4:])
        if parts[2] == "resnets":
            return f"{side}.mid.block_{int(parts[3]) + 1}." + rest.replace(
                "conv_shortcut", "nin_shortcut"
            )
        return f"{side}.mid.attn_1." + _replace_first(rest, VAE_ATTENTION_PARTS)
    return key.replace("conv_norm_out", "norm_out")


def write_ldm_checkpoint(pipeline: Path, target: Path) -> Path:
    """Write `pipeline` (a diffusers SD 1.5 folder) as one original-format `.safetensors`."""
    unet_config = json.loads((pipeline / "unet" / "config.json").read_text())
    vae_config = json.loads((pipeline / "vae" / "config.json").read_text())
    layers, ups = unet_config["layers_per_block"], len(vae_config["up_block_types"])
    state: dict[str, torch.Tensor] = {}

    up_has_attention = ["CrossAttn" in kind for kind in unet_config["up_block_types"]]
    for key, tensor in _weights(pipeline / "unet").items():
        name = unet_key(key, layers)
        if "{slot}" in name:
            name = name.replace("{slot}", "2" if up_has_attention[int(key.split(".")[1])] else "1")
        state[UNET_PREFIX + name] = tensor

    for key, tensor in _weights(pipeline / "vae").items():
        name = vae_key(key, ups)
        if ".attn_1." in name and name.endswith("weight") and tensor.ndim == 2:
            tensor = tensor[:, :, None, None]  # the original attention used 1×1 convolutions
        state[VAE_PREFIX + name] = tensor

    for key, tensor in _weights(pipeline / "text_encoder").items():
        # transformers ≥ 5.6 saves CLIPTextModel without its `text_model.` level.
        name = key if key.startswith("text_model.") else "text_model." + key
        state[CLIP_PREFIX + name] = tensor

    save_file({key: value.contiguous() for key, value in state.items()}, str(target))
    return target
