"""A small local server speaking the A1111 txt2img contract, with fault modes."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time
from typing import Any

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.embedded import free_port


class A1111Server:
    """A small local server speaking the A1111 txt2img contract."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode  # ok, hang (30 s), error (HTTP 500) or garbage
        self.bodies: list[dict[str, Any]] = []
        self.port = free_port()
        app = Starlette(routes=[Route("/sdapi/v1/txt2img", self.txt2img, methods=["POST"])])
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    async def txt2img(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        if self.mode == "hang":
            await asyncio.sleep(30)
        if self.mode == "error":
            return JSONResponse({"error": "OutOfMemoryError"}, status_code=500)
        if self.mode == "garbage":
            return JSONResponse({"images": ["not base64 at all!!"], "info": "{}"})
        out = io.BytesIO()
        Image.new("RGB", (body["width"], body["height"]), (1, 2, 3)).save(out, "PNG")
        return JSONResponse(
            {
                "images": [base64.b64encode(out.getvalue()).decode()],
                "info": json.dumps({"seed": body["seed"]}),
            }
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
