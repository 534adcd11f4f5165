"""`/sd you|me|scene|last`: a character writes the prompt from the stored conversation, and the
answering character's visual style goes around every prompt it draws."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from PIL import Image

from brain.brain import Brain
from brain.config import (
    CharacterConfig,
    DiffusersConfig,
    EndpointConfig,
    ImagesConfig,
    ImageStyle,
    QueueConfig,
)
from brain.history.store import HistoryStore
from brain.images.backends.local import DiffusersBackend
from brain.images.queue import ImageQueue
from brain.messages import Inbound
from brain.models.client import ModelClient
from tests.fake_openai import Behaviour, FakeOpenAIServer, last_user, system_of
from tests.helpers import RecordingGenerator, RecordingOutbox, close_brain

STYLE = ImageStyle(
    prefix="watercolor",
    suffix="soft light",
    negative="photo, text",
    lora="ink.safetensors",
    lora_scale=0.7,
)


def writer_reply(body: dict[str, Any]) -> str:
    """The prompt writer answers with a prompt; the chat gets an ordinary answer."""
    if "You write prompts for the Stable Diffusion" in system_of(body):
        return "Prompt: a woman with red hair in a green coat"
    return "Nice to meet you!"


@pytest_asyncio.fixture
async def painter(sqlite_url: str) -> Any:
    async for parts in painting(sqlite_url):
        yield parts


async def painting(sqlite_url: str, confirm: bool = False) -> Any:
    """A brain whose character writes prompts, drawing with a recording generator."""
    server = FakeOpenAIServer(behaviour=Behaviour(reply_for=writer_reply)).start()
    mom = CharacterConfig(
        name="mom",
        endpoint="f",
        model="fake",
        persona="You are mom, a cheerful robot.",
        image_style=STYLE,
    )
    generator = RecordingGenerator()
    brain = Brain(
        characters=[mom],
        clients={
            "f": ModelClient("f", EndpointConfig(base_url=server.base_url, context_window=4096))
        },
        history=HistoryStore(sqlite_url),
        image_generator=generator,
        images_config=ImagesConfig(default_size="64x64", confirm=confirm),
    )
    yield brain, server, generator
    await close_brain(brain)
    server.stop()


async def say(brain: Brain, text: str) -> RecordingOutbox:
    outbox = RecordingOutbox()
    await brain.handle(Inbound("t", "c", "u1", "ann", text), outbox)
    return outbox


async def test_sd_me_draws_the_user_from_the_conversation_in_the_characters_style(
    painter: Any,
) -> None:
    brain, server, generator = painter
    await say(brain, "Hi! I have red hair and I always wear a green coat.")
    outbox = await say(brain, "/sd me")
    assert outbox.errors == [] and len(outbox.images) == 1
    asked = server.requests[-1].body
    assert last_user(asked).startswith("Portray ann as the conversation describes them")
    assert "green coat" in str(asked["messages"])  # the stored conversation reached the writer
    request = generator.requests[-1]
    assert request.prompt == "watercolor, a woman with red hair in a green coat, soft light"
    assert request.negative_prompt == "photo, text"
    assert (request.lora, request.lora_scale) == ("ink.safetensors", 0.7)


@pytest.mark.parametrize(
    ("mode", "asks"),
    [
        (
            "you",
            "Portray yourself, mom, as this persona describes you: You are mom, a cheerful robot.",
        ),
        ("scene", "Illustrate the current scene of this conversation"),
        ("last", "Illustrate your last reply in this conversation: Nice to meet you!"),
    ],
)
async def test_each_mode_asks_the_writer_for_its_own_picture(
    painter: Any, mode: str, asks: str
) -> None:
    brain, server, generator = painter
    await say(brain, "Hello there")
    outbox = await say(brain, f"/sd {mode}")
    assert outbox.errors == [] and last_user(server.requests[-1].body).startswith(asks)
    assert generator.requests[-1].prompt.startswith("watercolor, a woman")


async def test_sd_last_with_nothing_said_yet_is_refused_and_a_free_prompt_is_styled(
    painter: Any,
) -> None:
    brain, _, generator = painter
    refused = await say(brain, "/sd last")
    assert refused.errors == ["I haven't said anything here yet that I could illustrate."]
    assert await brain.history.count("t:c") == 0  # nothing stored for a refused request
    outbox = await say(brain, "/sd a red fox --negative blurry")
    assert (
        outbox.errors == [] and generator.requests[-1].prompt == "watercolor, a red fox, soft light"
    )
    assert generator.requests[-1].negative_prompt == "blurry, photo, text"


async def test_drawn_images_stay_out_of_the_chat_context_but_the_prompt_writer_sees_them(
    painter: Any,
) -> None:
    brain, server, _ = painter
    await say(brain, "/sd a red fox")
    stored = await brain.history.recent("t:c", include_images=True)
    assert stored[0].content.startswith("[image: watercolor, a red fox, soft light (seed ")
    await say(brain, "What did you draw?")
    chat = server.requests[-1].body["messages"]
    assert "[image:" not in str(chat) and "(asked for an image) a red fox" in str(chat)
    await say(brain, "/sd scene")
    assert "[image: watercolor, a red fox" in str(server.requests[-1].body["messages"])


@pytest_asyncio.fixture
async def asking(sqlite_url: str) -> Any:
    async for parts in painting(sqlite_url, confirm=True):
        yield parts


async def test_with_confirm_a_written_prompt_waits_for_yes(asking: Any) -> None:
    brain, _, generator = asking
    proposed = await say(brain, "/sd me")
    assert generator.requests == [] and proposed.messages[-1].startswith(
        "🎨 I'd draw: a woman with red hair in a green coat\nSay **yes** to draw it"
    )
    drawn = await say(brain, "Yes!")
    assert len(drawn.images) == 1
    assert (
        generator.requests[-1].prompt
        == "watercolor, a woman with red hair in a green coat, soft light"
    )
    chat = await say(brain, "yes")  # no proposal any more: an ordinary message
    assert chat.text == "Nice to meet you!" and len(generator.requests) == 1


async def test_with_confirm_a_button_edit_is_drawn_no_drops_and_a_bad_edit_keeps_the_proposal(
    asking: Any,
) -> None:
    brain, _, generator = asking
    await say(brain, "/sd scene")
    too_long = RecordingOutbox()
    await brain.answer_proposal(Inbound("t", "c", "u1", "ann", "x" * 2000), too_long)
    assert too_long.errors == ["That prompt is too long: at most 1000 characters."]
    edited = RecordingOutbox()
    await brain.answer_proposal(Inbound("t", "c", "u1", "ann", "a lighthouse at night"), edited)
    assert generator.requests[-1].prompt == "watercolor, a lighthouse at night, soft light"
    await say(brain, "/sd you")
    dropped = await say(brain, "no")
    assert dropped.text == "All right, I won't draw it." and len(generator.requests) == 1


async def test_with_a_proposal_open_a_command_runs_a_question_is_answered_and_yes_draws(
    asking: Any,
) -> None:
    """Issue 32 defect 3: an open proposal swallowed the next message as its edited prompt."""
    brain, _, generator = asking
    await say(brain, "/sd you")
    helped = await say(brain, "/help")
    assert "/sd" in helped.text and generator.requests == []  # /help ran as /help
    drawn = await say(brain, "yes")  # the proposal waited through the command
    assert len(drawn.images) == 1 and len(generator.requests) == 1

    await say(brain, "/sd me")
    answered = await say(brain, "What is the capital of France?")
    assert answered.text == "Nice to meet you!" and len(generator.requests) == 1
    carried_on = await say(brain, "yes")  # the question was dropped: an ordinary message
    assert carried_on.text == "Nice to meet you!" and len(generator.requests) == 1


async def test_a_proposal_expires(asking: Any) -> None:
    brain, _, generator = asking
    now = [1000.0]
    brain.questions.clock = lambda: now[0]
    await say(brain, "/sd you")
    now[0] += brain.images.config.confirm_timeout_s + 1  # the proposal's time is up
    late = await say(brain, "yes")
    assert generator.requests == [] and late.text == "Nice to meet you!"


async def test_expired_proposals_are_dropped_not_kept_forever(asking: Any) -> None:
    """Issue 17 item 11: proposals nobody answered are pruned (and the map is bounded)."""
    brain, _, _ = asking
    now = [1000.0]
    brain.questions.clock = lambda: now[0]
    for user in ("u1", "u2", "u3"):
        await brain.handle(Inbound("t", "c", user, user, "/sd you"), RecordingOutbox())
    assert len(brain.questions) == 3
    now[0] += brain.images.config.confirm_timeout_s + 1  # all three went unanswered
    await brain.handle(Inbound("t", "c", "u4", "dee", "/sd you"), RecordingOutbox())
    assert len(brain.questions) == 1  # only the new one is kept


async def test_look_shows_the_last_drawn_image_to_the_vision_character_only(
    sqlite_url: str,
) -> None:
    server = FakeOpenAIServer(behaviour=Behaviour(reply="It is a red square.")).start()
    endpoint = EndpointConfig(base_url=server.base_url, context_window=4096)
    characters = [
        CharacterConfig(name="eye", endpoint="f", model="llava", vision=True),
        CharacterConfig(name="mom", endpoint="f", model="fake", role="synthesizer"),
    ]
    generator = RecordingGenerator()
    brain = Brain(
        characters=characters,
        clients={"f": ModelClient("f", endpoint)},
        history=HistoryStore(sqlite_url),
        image_generator=generator,
        images_config=ImagesConfig(default_size="64x64"),
    )
    nothing = await say(brain, "/look")
    assert nothing.errors == [
        "I have no image of this conversation to look at: draw one first (/sd)."
    ]
    await say(brain, "/sd a red fox")
    drawn = await say(brain, "What did you draw?")  # text characters: the prompt at most, no pixels
    assert drawn.errors == [] and all(
        isinstance(m["content"], str) for r in server.requests for m in r.body["messages"]
    )
    looked = await say(brain, "/look what colour is it?")
    assert looked.errors == [] and looked.text.endswith("It is a red square.")
    shown = [
        r.body
        for r in server.requests
        if r.body["model"] == "llava" and isinstance(r.body["messages"][-1]["content"], list)
    ]
    assert len(shown) == 1  # the vision character, once
    question, picture = shown[0]["messages"][-1]["content"]
    assert question == {"type": "text", "text": "what colour is it?"}
    pixels = Image.open(io.BytesIO(base64.b64decode(picture["image_url"]["url"].split(",", 1)[1])))
    assert pixels.size == (64, 64) and pixels.convert("RGB").getpixel((5, 5)) == (200, 30, 30)
    stored = await brain.history.recent("t:c")
    assert "as eye sees it: It is a red square." in stored[1].content  # the description is text
    await close_brain(brain)
    server.stop()


async def test_sd_me_through_the_tiny_diffusers_pipeline_gets_the_written_prompt_and_the_style(
    sqlite_url: str,
    tiny_pipeline: Path,
    tiny_loras: tuple[Path, Path],
) -> None:
    backend = DiffusersBackend(
        DiffusersConfig(model=str(tiny_pipeline), local_files_only=True, device="cpu")
    )
    await backend.load()
    pipeline, calls = backend._pipe, []

    class Spy:
        """The real pipeline, with each call's arguments noted."""

        def __getattr__(self, name: str) -> Any:
            return getattr(pipeline, name)

        def __call__(self, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return pipeline(**kwargs)

    backend._pipe = Spy()
    server = FakeOpenAIServer(behaviour=Behaviour(reply_for=writer_reply)).start()
    style = STYLE.model_copy(update={"lora": str(tiny_loras[0]), "lora_scale": 0.5})
    mom = CharacterConfig(name="mom", endpoint="f", model="fake", image_style=style)
    brain = Brain(
        characters=[mom],
        clients={
            "f": ModelClient("f", EndpointConfig(base_url=server.base_url, context_window=4096))
        },
        history=HistoryStore(sqlite_url),
        image_generator=ImageQueue(backend, QueueConfig()),
        images_config=ImagesConfig(default_size="64x64", default_steps=2),
    )
    await say(brain, "Hi! I have red hair and I always wear a green coat.")
    outbox = await say(brain, "/sd me")
    assert outbox.errors == [] and len(outbox.images) == 1
    (call,) = calls
    assert call["prompt"] == ["watercolor, a woman with red hair in a green coat, soft light"]
    assert call["negative_prompt"] == ["photo, text"] and call["num_inference_steps"] == 2
    assert pipeline.get_active_adapters() == [
        backend.loras.loaded[str(tiny_loras[0])]
    ]  # the style's LoRA
    assert Image.open(io.BytesIO(outbox.images[0][0])).size == (64, 64)
    await close_brain(brain)
    server.stop()


class GatedGenerator(RecordingGenerator):
    """Draws only once `release` is set: an image that takes minutes, on demand."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def generate(self, request: Any, progress: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return await super().generate(request, progress)


async def test_a_drawing_does_not_hold_up_its_channels_chat(sqlite_url: str) -> None:
    """Issue 17 item 6: the image renders outside the channel's turn and arrives when done."""
    server = FakeOpenAIServer(behaviour=Behaviour(reply_for=writer_reply)).start()
    mom = CharacterConfig(name="mom", endpoint="f", model="fake", persona="You are mom.")
    generator = GatedGenerator()
    brain = Brain(
        characters=[mom],
        clients={
            "f": ModelClient("f", EndpointConfig(base_url=server.base_url, context_window=4096))
        },
        history=HistoryStore(sqlite_url),
        image_generator=generator,
        images_config=ImagesConfig(default_size="64x64"),
    )
    try:
        drawing = RecordingOutbox()
        sd = asyncio.create_task(
            brain.handle(Inbound("t", "c", "u1", "ann", "/sd a red fox"), drawing)
        )
        await generator.started.wait()
        async with asyncio.timeout(60):  # a deadline: before the fix this waited forever
            chat = await say(brain, "How are you today?")  # same channel, while the fox renders
        assert chat.text == "Nice to meet you!" and drawing.images == []
        generator.release.set()
        await sd
        assert drawing.errors == [] and len(drawing.images) == 1
        stored = [
            t.content for t in reversed(await brain.history.recent("t:c", include_images=True))
        ]
        assert stored[:3] == [
            "(asked for an image) a red fox",
            "How are you today?",
            "Nice to meet you!",
        ]
        assert stored[3].startswith("[image: a red fox")  # stored when it arrived
    finally:
        await close_brain(brain)
        server.stop()
