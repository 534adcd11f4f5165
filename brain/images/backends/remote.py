"""A remote AUTOMATIC1111-compatible backend (`/sdapi/v1/txt2img`).

AUTOMATIC1111, Forge, SD.Next and koboldcpp speak this API, for users whose GPU box
is elsewhere. Each request is one call (no batching across users: seeds and prompts
differ); timeouts and errors become clear replies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from collections.abc import Hashable
from pathlib import Path

import httpx

from brain.config import A1111Config
from brain.errors import ModelBadResponse, ModelTimeout, ModelUnavailable
from brain.images.queue import BatchResult, StepFn
from brain.images.requests import GeneratedImage, ImageRequest


class A1111Backend:
    max_batch = 1

    def __init__(self, config: A1111Config, api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=10),
        )

    def shape_key(self, request: ImageRequest) -> Hashable:
        return id(request)  # never batched

    async def run_batch(self, requests: list[ImageRequest], on_step: StepFn) -> list[BatchResult]:
        return [await self._one(r) for r in requests]

    async def _one(self, request: ImageRequest) -> GeneratedImage:
        prompt = request.prompt
        if request.lora:  # A1111's own prompt syntax, naming a LoRA the server has
            prompt += f" <lora:{Path(request.lora).stem}:{request.lora_scale:g}>"
        payload = {
            "prompt": prompt,
            "negative_prompt": request.negative_prompt,
            "steps": request.steps,
            "width": request.width,
            "height": request.height,
            "cfg_scale": request.guidance,
            "seed": request.seed,
            "batch_size": 1,
            "n_iter": 1,
        }
        if self.config.sampler:
            payload["sampler_name"] = self.config.sampler
        try:
            response = await self._http.post("/sdapi/v1/txt2img", json=payload)
        except httpx.TimeoutException as exc:
            raise ModelTimeout(
                "The image server did not answer in time.", detail=repr(exc)
            ) from exc
        except httpx.HTTPError as exc:
            raise ModelUnavailable("The image server cannot be reached.", detail=repr(exc)) from exc
        if response.status_code != 200:
            raise ModelBadResponse(
                f"The image server answered with an error (HTTP {response.status_code}).",
                detail=response.text[:500],
            )
        # A body of several MB: JSON and base64 decoding happen off the event loop.
        png, info = await asyncio.to_thread(_decode_reply, response.content)
        width, height = _png_size(png)
        seed = int(info.get("seed", request.seed)) if isinstance(info, dict) else request.seed
        return GeneratedImage(png, width, height, seed, request.prompt)

    async def aclose(self) -> None:
        await self._http.aclose()


def _decode_reply(body: bytes) -> tuple[bytes, object]:
    """(PNG bytes, the info object) from a txt2img reply; runs in a worker thread."""
    try:
        reply = json.loads(body)
        png = base64.b64decode(reply["images"][0].split(",", 1)[-1], validate=True)
        return png, json.loads(reply.get("info") or "{}")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, binascii.Error) as exc:
        raise ModelBadResponse(
            "The image server sent something that is not an image.", detail=repr(exc)
        ) from exc


def _png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ModelBadResponse(
            "The image server sent something that is not an image.", detail=repr(exc)
        ) from exc
