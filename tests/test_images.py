"""Image generation: the real diffusers path on a tiny pipeline, batching, limits, GPU
cool-down, A1111."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bot.embedded import free_port
from brain.brain import Brain
from brain.config import (
    A1111Config,
    CharacterConfig,
    DiffusersConfig,
    EndpointConfig,
    GpuConfig,
    ImagesConfig,
    QueueConfig,
)
from brain.errors import Busy, ModelBadResponse, ModelTimeout, MombotError
from brain.history.store import HistoryStore
from brain.images.backends.local import DiffusersBackend
from brain.images.backends.remote import A1111Backend
from brain.images.gpu import GpuMonitor
from brain.images.queue import ImageQueue, StepFn
from brain.images.requests import GeneratedImage, ImageRequest
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.a1111 import A1111Server
from tests.helpers import FakeNvml, RecordingOutbox, SlowBackend, close_brain
from tests.ldm_checkpoint import write_ldm_checkpoint


def request(
    prompt: str = "a red fox",
    seed: int = 1,
    user: str = "u1",
    size: int = 64,
    lora: str = "",
    lora_scale: float = 1.0,
) -> ImageRequest:
    return ImageRequest(
        prompt=prompt,
        width=size,
        height=size,
        steps=2,
        seed=seed,
        user_id=user,
        lora=lora,
        lora_scale=lora_scale,
    )


def pixels(image: GeneratedImage) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image.png)).convert("RGB"), dtype=np.int16)


async def no_progress(text: str) -> None:
    return None


@pytest.fixture
def backend(tiny_pipeline: Path) -> DiffusersBackend:
    config = DiffusersConfig(model=str(tiny_pipeline), local_files_only=True, device="cpu")
    return DiffusersBackend(config, max_batch=4)


async def test_loads_from_a_local_folder_and_draws_deterministically(
    backend: DiffusersBackend,
) -> None:
    steps: list[tuple[int, int]] = []
    first = (await backend.run_batch([request(seed=7)], lambda s, t: steps.append((s, t))))[0]
    again = (await backend.run_batch([request(seed=7)], lambda s, t: None))[0]
    other = (await backend.run_batch([request(seed=8)], lambda s, t: None))[0]
    assert first.png.startswith(b"\x89PNG") and (first.width, first.height) == (64, 64)
    assert Image.open(io.BytesIO(first.png)).mode == "RGB"
    assert first.png == again.png and first.png != other.png
    assert steps == [(1, 2), (2, 2)]
    assert backend.device == "cpu" and backend.load_seconds is not None
    assert (
        type(backend._pipe).__name__ == "StableDiffusionPipeline"
    )  # through AutoPipelineForText2Image


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, "EulerDiscreteScheduler"),  # mombot's default: no wait for the GPU at each step
        ("euler_a", "EulerAncestralDiscreteScheduler"),
        ("default", "DDIMScheduler"),  # the one the tiny model ships with
    ],
)
async def test_scheduler_choice_is_applied(
    tiny_pipeline: Path, choice: str | None, expected: str
) -> None:
    chosen = {"scheduler": choice} if choice else {}
    config = DiffusersConfig(model=str(tiny_pipeline), local_files_only=True, **chosen)
    backend = DiffusersBackend(config)
    await backend.load()
    assert type(backend._pipe.scheduler).__name__ == expected


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
async def test_compiled_model_warms_up_and_draws_the_same_images_with_and_without_a_lora(
    tiny_pipeline: Path, backend: DiffusersBackend, tiny_loras: tuple[Path, Path], mode: str
) -> None:
    # No CUDA graphs on the CPU, but reduce-overhead still runs our output-copying wrapper.
    config = DiffusersConfig(
        model=str(tiny_pipeline),
        local_files_only=True,
        device="cpu",
        compile=True,
        compile_mode=mode,
        compile_warmup_size=64,
    )
    compiled = DiffusersBackend(config)
    await asyncio.wait_for(compiled.load(), timeout=300)  # a deadlocked warm-up would hang here
    assert compiled.compile_seconds is not None
    fast = (await compiled.run_batch([request(seed=11)], lambda s, t: None))[0]
    plain = (await backend.run_batch([request(seed=11)], lambda s, t: None))[0]
    assert np.abs(pixels(fast) - pixels(plain)).max() <= 2
    # A character's LoRA loads after the warm-up traced the UNet without it: the compiled forward
    # has to notice the new layers rather than replay the traced graph without them.
    ink = str(tiny_loras[0])
    compiled_inked = await draw(compiled, lora=ink)
    assert np.abs(compiled_inked - await draw(backend, lora=ink)).max() <= 2
    assert np.abs(compiled_inked - await draw(compiled)).max() > 8


async def test_loads_an_original_single_file_checkpoint_and_draws_the_same_image(
    tiny_pipeline: Path, backend: DiffusersBackend, tmp_path: Path
) -> None:
    checkpoint = write_ldm_checkpoint(tiny_pipeline, tmp_path / "tiny-community-model.safetensors")
    config = DiffusersConfig(
        model=str(checkpoint),
        single_file_config=str(tiny_pipeline),
        local_files_only=True,
        device="cpu",
    )
    single = DiffusersBackend(config)
    from_file = (await single.run_batch([request(seed=5)], lambda s, t: None))[0]
    from_folder = (await backend.run_batch([request(seed=5)], lambda s, t: None))[0]
    assert type(single._pipe).__name__ == "StableDiffusionPipeline"
    # diffusers renamed every original key back; had one weight been missed, it would be random.
    assert np.abs(pixels(from_file) - pixels(from_folder)).max() <= 1


def test_the_original_checkpoint_round_trips_through_diffusers_own_converter(
    tiny_pipeline: Path, tmp_path: Path
) -> None:
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    checkpoint = load_file(write_ldm_checkpoint(tiny_pipeline, tmp_path / "tiny.safetensors"))
    assert any(key.startswith("model.diffusion_model.output_blocks.") for key in checkpoint)
    for part, convert in (
        ("unet", convert_ldm_unet_checkpoint),
        ("vae", convert_ldm_vae_checkpoint),
    ):
        original = load_file(next((tiny_pipeline / part).glob("*.safetensors")))
        config = json.loads((tiny_pipeline / part / "config.json").read_text())
        converted = convert(dict(checkpoint), config)
        assert converted.keys() == original.keys()
        assert all(torch.equal(converted[key], original[key]) for key in original)


async def draw(backend: DiffusersBackend, **kwargs: Any) -> np.ndarray:
    return pixels((await backend.run_batch([request(seed=3, **kwargs)], lambda s, t: None))[0])


async def test_a_characters_lora_changes_its_images_and_only_its_images(
    backend: DiffusersBackend, tiny_loras: tuple[Path, Path]
) -> None:
    ink, oil = (str(path) for path in tiny_loras)
    plain = await draw(backend)
    inked = await draw(backend, lora=ink)
    oiled = await draw(backend, lora=oil)
    assert np.abs(inked - plain).max() > 8 and np.abs(oiled - inked).max() > 8
    assert (
        np.abs(await draw(backend, lora=ink, lora_scale=0.0) - plain).max() <= 1
    )  # scale 0: no effect
    assert (
        np.abs(await draw(backend, lora=ink) - inked).max() <= 1
    )  # loaded once, same result again
    assert (
        np.abs(await draw(backend) - plain).max() <= 1
    )  # switched off for a character without one
    assert len(backend.loras.loaded) == 2


async def test_a_lora_applies_although_the_gpu_setup_fused_the_attention_projections(
    backend: DiffusersBackend, tiny_pipeline: Path, tiny_loras: tuple[Path, Path]
) -> None:
    ink = str(tiny_loras[0])
    await backend.load()
    backend._pipe.fuse_qkv_projections()  # what _configure does on CUDA
    fused_plain = await draw(backend)
    fused_inked = await draw(backend, lora=ink)
    separate = DiffusersBackend(
        DiffusersConfig(model=str(tiny_pipeline), local_files_only=True, device="cpu")
    )
    assert np.abs(fused_inked - await draw(separate, lora=ink)).max() <= 1
    assert np.abs(fused_inked - fused_plain).max() > 8
    assert np.abs(await draw(backend) - fused_plain).max() <= 1  # and without a LoRA, as before


async def test_requests_with_different_loras_are_never_batched_together(
    backend: DiffusersBackend, tiny_loras: tuple[Path, Path]
) -> None:
    ink = str(tiny_loras[0])
    solo = [await draw(backend), await draw(backend, lora=ink)]
    calls: list[int] = []
    run_batch = backend.run_batch

    async def counting(requests: list[ImageRequest], on_step: StepFn) -> list[GeneratedImage]:
        calls.append(len(requests))
        return await run_batch(requests, on_step)

    backend.run_batch = counting  # type: ignore[method-assign]
    queue = ImageQueue(backend, QueueConfig(max_batch=4, batch_window_ms=300, per_user=5))
    together = await asyncio.gather(
        queue.generate(request(seed=3, user="a"), no_progress),
        queue.generate(request(seed=3, user="b", lora=ink), no_progress),
    )
    assert sorted(calls) == [1, 1]
    for alone, image in zip(solo, together, strict=True):
        assert np.abs(pixels(image) - alone).max() <= 1


async def test_a_lora_that_cannot_be_loaded_is_a_clear_error(
    backend: DiffusersBackend, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    for lora in (str(broken), str(tmp_path / "missing.safetensors")):
        with pytest.raises(MombotError) as caught:
            await draw(backend, lora=lora)
        assert (
            caught.value.user_message
            == "I could not load this character's LoRA; the details are in the bot's log."
        )
    await draw(backend)  # the pipeline still draws


async def test_lcm_lora_fast_mode_fuses_its_lora_and_uses_the_lcm_scheduler(
    tiny_pipeline: Path, backend: DiffusersBackend, tiny_loras: tuple[Path, Path]
) -> None:
    # The tiny LoRA stands in for LCM-LoRA: the same loading, fusing and scheduler switch.
    config = DiffusersConfig(
        model=str(tiny_pipeline), local_files_only=True, device="cpu", lcm_lora=str(tiny_loras[0])
    )
    fast = DiffusersBackend(config)
    fused = await draw(fast)
    assert type(fast._pipe.scheduler).__name__ == "LCMScheduler"
    assert not fast._pipe.get_list_adapters()  # fused into the weights, no adapter left behind
    assert np.abs(fused - await draw(backend)).max() > 8
    # a character's LoRA goes on top of the fused one, and off again
    assert np.abs(await draw(fast, lora=str(tiny_loras[1])) - fused).max() > 8
    assert np.abs(await draw(fast) - fused).max() <= 1


async def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    for model in (str(tmp_path / "nothing-here"), str(tmp_path / "model.safetensors")):
        backend = DiffusersBackend(DiffusersConfig(model=model, local_files_only=True))
        with pytest.raises(MombotError) as caught:
            await backend.load()
        assert (
            caught.value.user_message
            == "I could not load the image model; the details are in the bot's log."
        )


async def test_concurrent_requests_are_batched_and_match_their_solo_images(
    backend: DiffusersBackend,
) -> None:
    solo = {
        seed: (await backend.run_batch([request(f"prompt {seed}", seed)], lambda s, t: None))[0]
        for seed in (1, 2, 3)
    }
    queue = ImageQueue(backend, QueueConfig(max_batch=4, batch_window_ms=300, per_user=5))
    batched = await asyncio.gather(
        *(
            queue.generate(request(f"prompt {seed}", seed, user=f"u{seed}"), no_progress)
            for seed in (1, 2, 3)
        )
    )
    assert list(queue.batches_run) == [3]  # three requests, one pipeline call
    for seed, image in zip((1, 2, 3), batched, strict=True):
        assert image.seed == seed and image.prompt == f"prompt {seed}"
        assert np.abs(pixels(image) - pixels(solo[seed])).max() <= 1  # same image, up to rounding


def recorder(told: dict[str, list[str]], name: str, queued: asyncio.Event | None = None):
    """Progress into `told[name]`; `queued` is set once the queue has said anything."""

    async def progress(text: str) -> None:
        told.setdefault(name, []).append(text)
        if queued is not None:
            queued.set()

    return progress


async def test_queue_positions_shapes_and_bound() -> None:
    slow = SlowBackend()
    queue = ImageQueue(
        slow,
        QueueConfig(
            max_batch=2, batch_window_ms=50, max_queue=3, per_user=2, progress_interval_s=0.2
        ),
    )
    told: dict[str, list[str]] = {}
    first = asyncio.create_task(queue.generate(request("a", user="ann"), recorder(told, "a")))
    await slow.started.wait()  # "a" runs alone
    waiting = []
    for prompt, user, size in (("b", "bob", 64), ("c", "cat", 128), ("d", "dan", 64)):
        queued = asyncio.Event()
        progress = recorder(told, prompt, queued)
        waiting.append(
            asyncio.create_task(queue.generate(request(prompt, user=user, size=size), progress))
        )
        await queued.wait()  # in the queue, in this order
    assert queue.length == 4
    with pytest.raises(Busy) as caught:
        await queue.generate(request("e", user="eve"), no_progress)
    assert (
        caught.value.user_message
        == "I'm busy: 3 images are waiting already. Try again in a few minutes."
    )
    assert told["b"] == ["Queued: 1 image ahead of yours."]
    assert told["d"] == ["Queued: 3 images ahead of yours."]
    slow.release.set()
    await asyncio.gather(first, *waiting)
    assert slow.calls == [["a"], ["b", "d"], ["c"]]  # the same-shaped b and d shared a batch
    assert any(t.startswith("Drawing: step ") for t in told["a"])


async def test_per_user_limit() -> None:
    slow = SlowBackend()
    queue = ImageQueue(slow, QueueConfig(per_user=1, batch_window_ms=0))
    first = asyncio.create_task(queue.generate(request("a", user="ann"), no_progress))
    await slow.started.wait()
    with pytest.raises(Busy) as caught:
        await queue.generate(request("again", user="ann"), no_progress)
    assert caught.value.user_message == "You already have an image on the way; let it finish first."
    slow.release.set()
    await first


async def test_a_full_batch_starts_without_waiting_out_the_window() -> None:
    slow = SlowBackend()
    slow.max_batch = 4
    slow.release.set()
    queue = ImageQueue(slow, QueueConfig(max_batch=2, batch_window_ms=5000, per_user=5))
    both = asyncio.gather(
        queue.generate(request("a", user="ann"), no_progress),
        queue.generate(request("b", user="bob"), no_progress),
    )
    # The batch is full at the configured limit of 2 (below the backend's 4), so the 5 s window
    # is not waited out.
    images = await asyncio.wait_for(both, timeout=2.5)
    assert [i.prompt for i in images] == ["a", "b"] and slow.calls == [["a", "b"]]


async def test_a_cancelled_request_never_runs() -> None:
    slow = SlowBackend()
    queue = ImageQueue(slow, QueueConfig(max_batch=1, batch_window_ms=0, per_user=5))
    running = asyncio.create_task(queue.generate(request("first", user="a"), no_progress))
    await slow.started.wait()
    queued = asyncio.Event()
    gone = asyncio.create_task(
        queue.generate(request("gone", user="b"), recorder({}, "gone", queued))
    )
    await queued.wait()  # it waits behind "first"
    gone.cancel()  # e.g. the chat's reply task was cancelled
    await asyncio.gather(gone, return_exceptions=True)
    slow.release.set()
    await running
    assert slow.calls == [["first"]] and queue.length == 0


async def test_cool_down_waits_for_the_hottest_gpu_with_hysteresis() -> None:
    # GPU 0 is cool; GPU 1 is hot and cools slowly: a first-GPU-only check would never wait
    nvml = FakeNvml([[50], [82, 80, 74, 71, 69]])
    monitor = GpuMonitor(GpuConfig(max_temperature_c=75, hysteresis_c=5, poll_s=0.01), nvml=nvml)
    reports: list[str] = []

    async def report(text: str) -> None:
        reports.append(text)

    await monitor.cool_down(report)
    assert reports[0] == "The GPU is hot (82 °C); cooling down to 70 °C first…"
    assert len(reports) == 4  # 82, 80, 74, 71 are all above 70
    assert monitor.hottest() == 69
    assert "GPU 1 NVIDIA Test GPU: 69 °C, 97% busy, 2048/81920 MiB" in monitor.describe()


async def test_without_nvml_the_monitor_never_blocks() -> None:
    class Broken:
        NVMLError = FakeNvml.NVMLError  # pynvml's error type; its library is what is missing

        def nvmlInit(self) -> None:
            raise OSError("NVML Shared Library Not Found")

    monitor = GpuMonitor(GpuConfig(), nvml=Broken())
    assert not monitor.available and monitor.describe() == "GPU: NVML not available (OSError)"
    await asyncio.wait_for(monitor.cool_down(no_progress), timeout=1)
    real = GpuMonitor(GpuConfig())  # this machine has no NVIDIA GPU
    assert not real.available and real.readings() == []


async def test_hot_gpu_holds_the_chat_with_a_message(fake_server: Any, sqlite_url: str) -> None:
    brain = chat_brain(
        fake_server,
        sqlite_url,
        gpu=GpuMonitor(GpuConfig(poll_s=0.01), nvml=FakeNvml([[90, 72, 60]])),
    )
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "how are you doing today?"), outbox)
    assert outbox.events[1] == ("send", "The GPU is hot (90 °C); cooling down to 70 °C first…")
    assert outbox.events[2] == ("edit", (0, "The GPU is hot (72 °C); cooling down to 70 °C first…"))
    assert outbox.messages[-1] == "Hello from the fake server."


async def test_a_gpu_monitor_that_cannot_read_is_no_reading_and_images_and_chat_go_on(
    fake_server: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 33 defect 1: an NVML error killed the image queue's worker (every waiting image
    waited forever) and turned replies into the generic error."""
    monitor = GpuMonitor(GpuConfig(poll_s=0.01), nvml=FakeNvml([[90]], broken=True))
    backend = SlowBackend()
    backend.release.set()
    queue = ImageQueue(backend, QueueConfig(batch_window_ms=0), gpu=monitor)
    brain = chat_brain(fake_server, sqlite_url, gpu=monitor, image_generator=queue)
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "how are you doing today?"), outbox)
    assert outbox.errors == [] and outbox.messages[-1] == "Hello from the fake server."
    drawn = RecordingOutbox()
    await asyncio.wait_for(
        brain.handle(Inbound("t", "c", "u", "ann", "/sd a red fox --size 64x64"), drawn), 30
    )
    assert drawn.errors == [] and len(drawn.images) == 1
    assert caplog.text.count("NVML could not read the GPUs") == 1  # said once
    await close_brain(brain)


def chat_brain(fake_server: Any, sqlite_url: str, **options: Any) -> Brain:
    client = ModelClient("f", EndpointConfig(base_url=fake_server.base_url, context_window=4096))
    return Brain(
        characters=[CharacterConfig(name="mom", endpoint="f", model="fake")],
        clients={"f": client},
        history=HistoryStore(sqlite_url),
        **options,
    )


async def test_sd_end_to_end_through_the_queue(
    fake_server: Any, sqlite_url: str, backend: DiffusersBackend
) -> None:
    brain = chat_brain(
        fake_server,
        sqlite_url,
        image_generator=ImageQueue(backend, QueueConfig(progress_interval_s=0.2)),
        images_config=ImagesConfig(default_size="64x64", default_steps=2),
    )
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u", "ann", "/sd a tiny red fox --seed 3"), outbox)
    assert outbox.errors == []
    png, name, caption = outbox.images[0]
    assert name == "mombot-3.png" and Image.open(io.BytesIO(png)).size == (64, 64)
    assert caption == "a tiny red fox\n(seed 3, 64x64, 2 steps)"
    assert ("edit", (0, "🎨 Drawing: step 1/2")) in outbox.events  # progress while it renders
    assert outbox.messages[0] == "🎨 Done: a tiny red fox"  # not left at a step once it is sent


async def test_a1111_backend(a1111: A1111Server) -> None:
    backend = A1111Backend(
        A1111Config(base_url=f"http://127.0.0.1:{a1111.port}", timeout_s=1, sampler="Euler a")
    )
    image = (
        await backend.run_batch(
            [ImageRequest("a cat", "blurry", 96, 64, 20, 6.0, 42)], lambda s, t: None
        )
    )[0]
    assert (image.width, image.height, image.seed) == (96, 64, 42)
    assert a1111.bodies[0] == {
        "prompt": "a cat",
        "negative_prompt": "blurry",
        "steps": 20,
        "width": 96,
        "height": 64,
        "cfg_scale": 6.0,
        "seed": 42,
        "batch_size": 1,
        "n_iter": 1,
        "sampler_name": "Euler a",
    }
    # A character's LoRA reaches A1111 in its own prompt syntax, by the name the server knows.
    await backend.run_batch(
        [request("a cat", lora="/loras/ink-style.safetensors", lora_scale=0.8)], lambda s, t: None
    )
    assert a1111.bodies[1]["prompt"] == "a cat <lora:ink-style:0.8>"
    for mode, error, text in [
        ("error", ModelBadResponse, "The image server answered with an error (HTTP 500)."),
        ("garbage", ModelBadResponse, "The image server sent something that is not an image."),
        ("hang", ModelTimeout, "The image server did not answer in time."),
    ]:
        a1111.mode = mode
        with pytest.raises(error) as caught:
            await backend.run_batch([request()], lambda s, t: None)
        assert caught.value.user_message == text
    await backend.aclose()
    down = A1111Backend(A1111Config(base_url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(MombotError) as unreachable:
        await down.run_batch([request()], lambda s, t: None)
    assert unreachable.value.user_message == "The image server cannot be reached."
    await down.aclose()


class FlaggingPipeline:
    """The real tiny pipeline, with the safety checker's verdict injected per prompt.

    A tiny random pipeline has no meaningful safety checker; what matters here is how the
    bot handles a verdict that flags one image of a batch, so the verdict is set by prompt.
    """

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, **kwargs: Any) -> Any:
        output = self.pipe(**kwargs)
        output.nsfw_content_detected = ["flagged" in prompt for prompt in kwargs["prompt"]]
        return output


async def test_a_flagged_image_fails_only_its_own_request(backend: DiffusersBackend) -> None:
    """Issue 17 item 5: batches mix users; the safety checker's verdict costs one request."""
    await backend.load()
    backend._pipe = FlaggingPipeline(backend._pipe)
    queue = ImageQueue(backend, QueueConfig(max_batch=2, batch_window_ms=200))
    fine, flagged = await asyncio.gather(
        queue.generate(request("a red fox", seed=1, user="ann"), no_progress),
        queue.generate(request("something flagged", seed=2, user="bob"), no_progress),
        return_exceptions=True,
    )
    assert list(queue.batches_run) == [2]  # one pipeline call for both
    assert isinstance(fine, GeneratedImage) and Image.open(io.BytesIO(fine.png)).size == (64, 64)
    assert isinstance(flagged, MombotError)
    assert flagged.user_message == "The safety checker blocked that image; try another prompt."
    await queue.aclose()


async def test_closing_the_queue_stops_its_worker_fails_waiting_jobs_and_closes_the_backend() -> (
    None
):
    """Issue 17 item 13: the worker, a job still waiting and the backend all end on aclose."""
    slow = SlowBackend()
    queue = ImageQueue(slow, QueueConfig(max_batch=1, batch_window_ms=0))
    running = asyncio.create_task(queue.generate(request("a", user="ann"), no_progress))
    waiting = asyncio.create_task(queue.generate(request("b", user="bob"), no_progress))
    await slow.started.wait()  # "a" is in the backend, "b" waits its turn
    await queue.aclose()
    for job in (running, waiting):
        with pytest.raises(MombotError):
            await job
    assert slow.closed and queue.length == 0


async def test_closing_the_diffusers_backend_ends_its_thread(backend: DiffusersBackend) -> None:
    import threading

    before = set(threading.enumerate())  # other tests' backends may still hold theirs
    await backend.run_batch([request()], lambda step, total: None)
    own = [t for t in set(threading.enumerate()) - before if t.name.startswith("diffusers")]
    assert len(own) == 1 and own[0].is_alive()
    await backend.aclose()
    assert not own[0].is_alive()


async def test_a1111_replies_are_decoded_off_the_event_loop(
    a1111: A1111Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 item 12: a multi-MB JSON body with base64 is decoded in a worker thread."""
    import threading

    from brain.images.backends import remote

    decoded_on: list[str] = []
    decode = remote._decode_reply

    def recording(body: bytes) -> Any:
        decoded_on.append(threading.current_thread().name)
        return decode(body)

    monkeypatch.setattr(remote, "_decode_reply", recording)
    backend = A1111Backend(A1111Config(base_url=a1111.base_url))
    await backend.run_batch([request()], lambda step, total: None)
    await backend.aclose()
    assert decoded_on and decoded_on[0] != threading.main_thread().name
