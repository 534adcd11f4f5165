"""Typed configuration sections for the brain's components.

`bot.config` assembles these into the one config object; each component gets
only its own section. Every model forbids unknown keys so typos fail at start.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from brain.characters.lorebook import Lore
from brain.memory.config import MemoryConfig as MemoryConfig  # its section, re-exported
from brain.strict_model import StrictModel

ServerKind = Literal["openai", "llama-cpp-python", "llama.cpp", "ollama", "vllm", "koboldcpp"]


class EndpointConfig(StrictModel):
    """One OpenAI-compatible model server."""

    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1")
    kind: ServerKind = Field(
        "openai",
        description="Server software; decides how structured output, tokenizing and "
        "context size are asked for.",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable that holds this server's API key."
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for a whole answer.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Seconds to wait for a connection.")
    max_retries: int = Field(1, ge=0, le=5, description="Retries on connection errors and 5xx.")
    context_window: int | None = Field(
        None, gt=0, description="Context size in tokens; empty: ask the server, else 2048."
    )
    max_parallel: int | None = Field(
        None,
        ge=1,
        description="Requests sent at once. Empty: 1 for llama-cpp-python (it serves one "
        "request at a time), 8 otherwise.",
    )


class ImageStyle(StrictModel):
    """How a character's images look: tags around every prompt it draws, and what to avoid."""

    prefix: str = Field(
        "", description='Tags put before the prompt, e.g. "watercolor, soft light".'
    )
    suffix: str = Field("", description='Tags put after the prompt, e.g. "highly detailed".')
    negative: str = Field(
        "", description="Added to every negative prompt of this character's images."
    )
    lora: str = Field(
        "",
        description="A LoRA for this character's images: a .safetensors file, a folder or a "
        "Hugging Face id (diffusers); for the A1111 backend, the LoRA's name on that server.",
    )
    lora_scale: float = Field(1.0, ge=0, le=2, description="How strongly the LoRA applies.")


class CharacterConfig(StrictModel):
    """A character: a persona speaking through one model on one endpoint."""

    name: str = Field(
        min_length=1, max_length=64, description="Shown in /characters, footers and debug views."
    )
    endpoint: str = Field("embedded", description="Name of an [endpoints.NAME] section.")
    model: str = Field("smollm2-135m", description="Model name as the endpoint knows it.")
    persona: str = Field(
        "You are a helpful assistant.", description="System prompt that sets the character."
    )
    temperature: float = Field(
        0.7, ge=0, le=2, description="0: deterministic; higher: more varied."
    )
    max_tokens: int = Field(256, ge=1, le=32768, description="Reply length; also the reserve.")
    timeout_s: float | None = Field(None, gt=0, description="Overrides the endpoint's timeout.")
    vision: bool | None = Field(
        None,
        description="The model accepts images. Unset: ask the server (Ollama lists it in its "
        "capabilities); a server that does not say means no.",
    )
    image_style: ImageStyle = Field(default_factory=ImageStyle)
    reasoning: Literal["default", "off", "low", "medium", "high"] = Field(
        "default",
        description="For reasoning models, through the server's own switch (reasoning_effort, "
        "chat_template_kwargs.enable_thinking, Ollama's think); default: send none.",
    )
    role: Literal["member", "synthesizer"] = Field(
        "member",
        description=(
            "Members answer; the synthesizer merges their answers (default: the first member)."
        ),
    )
    weight: float = Field(1.0, ge=0, le=10, description="Weight of this character's votes.")
    enabled: bool = Field(True, description="false: keep the character configured but unused.")
    card: str = Field(
        "",
        description="A character card (`mombot characters import` writes it, relative to the "
        "config file): its fields make the persona, with `persona` as its {{original}}.",
    )
    avatar: str = Field(
        "",
        description="A PNG shown with the character's messages where the platform can (the web "
        "page, Discord webhooks); relative to the config file. An imported card's picture.",
    )
    examples: str = Field(
        "",
        description="Example dialogues (a card's mes_example): after the persona where the "
        "model's window has room for them, else left out first.",
    )
    lorebooks: list[str] = Field(
        default_factory=list,
        description="Lorebook files (a V3 lorebook or SillyTavern World Info JSON), relative to "
        "the config file: their entries join the card's own (character_book).",
    )
    lore: Lore | None = Field(
        None, description="Set from the card's book and `lorebooks` when the config is read."
    )
    greetings: list[str] = Field(
        default_factory=list,
        description="How the character opens a new channel (a card's first_mes and "
        "alternate_greetings); only the character who writes the reply greets.",
    )
    greeting: Literal["first", "random"] = Field(
        "first", description="Which greeting opens a channel: the first, or one at random."
    )
    post_history: str = Field(
        "",
        description="Instructions after the conversation, just before the reply (a card's "
        "post_history_instructions); {{user}} is the one who wrote.",
    )


class HistoryConfig(StrictModel):
    """Where per-channel conversation history lives."""

    database_url: str = Field(
        "sqlite:///mombot.db",
        description="SQLAlchemy URL. Relative SQLite paths are inside bot.data_dir. "
        "PostgreSQL: postgresql+psycopg://user@host/db; a URL with a password belongs in the "
        "MOMBOT_DATABASE_URL environment variable, which overrides this.",
    )
    max_turn_chars: int = Field(
        32000, ge=100, description="Longer messages are cut before they are stored."
    )


class ChannelsConfig(StrictModel):
    """How much one channel may have waiting for the bot."""

    max_waiting: int = Field(
        20,
        ge=1,
        le=1000,
        description="Messages a channel may have waiting or being answered; past it the "
        "sender is told the bot is busy there (nothing else is dropped or reordered).",
    )


class MixtureConfig(StrictModel):
    """How the characters answer together."""

    fast_path_max_words: int = Field(
        3,
        ge=0,
        description="Messages this short (greetings) are answered by the synthesizer alone.",
    )
    debug: bool = Field(False, description="Show every proposal, its timing and token figures.")
    name_failures: bool = Field(True, description="Name characters that failed in a footer.")


class RoutingConfig(StrictModel):
    """Deciding whether a message asks for text or for an image."""

    mode: Literal["embedding", "hybrid", "llm", "off"] = Field(
        "embedding",
        description="embedding: the trained router, which asks the user when unsure; hybrid: "
        "the LLM decides where the router is unsure; llm: the LLM alone; off: everything is "
        "text.",
    )
    endpoint: str = Field(
        "", description="Endpoint of the small classifier; empty: the first member's."
    )
    model: str = Field("", description="The small classifier model; empty: the first member's.")
    embedding_model: str = Field(
        "",
        description="Folder of a sentence-transformers model; empty: the bundled all-MiniLM-L6-v2.",
    )
    sure_image: float = Field(
        0.7,
        ge=0.5,
        le=1,
        description="At or above this probability of an image request the router draws without "
        "asking.",
    )
    sure_text: float = Field(
        0.3,
        ge=0,
        le=0.5,
        description="At or below this probability of an image request it answers in words; "
        "between the two it is unsure.",
    )
    ask: bool = Field(
        True,
        description="When unsure, ask the user (Draw it / Just answer); false: take the likelier "
        "route.",
    )
    history_turns: int = Field(4, ge=0, le=20, description="Recent turns the LLM classifier sees.")


class AttachmentsConfig(StrictModel):
    """What files the bot accepts with a message."""

    max_image_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Larger images are refused before download."
    )
    max_image_pixels: int = Field(40_000_000, ge=1024, description="Larger images are refused.")
    vision_max_side: int = Field(1024, ge=64, description="Images are scaled down to this side.")
    max_text_bytes: int = Field(
        1024 * 1024, ge=1024, description="Larger text files are refused before download."
    )
    text_token_budget: int = Field(
        1500, ge=16, description="Tokens of attached text files included in the message."
    )


class DiffusersConfig(StrictModel):
    """The local Stable Diffusion generator (diffusers, in a worker thread)."""

    model: str = Field(
        "", description="A Hugging Face id, a local diffusers folder, or a .safetensors/.ckpt file."
    )
    single_file_config: str = Field(
        "", description="For a single file: a diffusers folder or hub id with the matching configs."
    )
    scheduler: Literal["default", "euler", "euler_a", "dpm++", "ddim", "unipc", "lcm"] = Field(
        "euler",
        description='Sampler; "default" keeps the one the model ships with. Euler is preset '
        "because SD 1.5's own PNDM waits for the GPU at every step (0.147 vs 0.135 s/image "
        "at 8 on an H100).",
    )
    lcm_lora: str = Field(
        "", description="LCM-LoRA weights (id, folder or file): fast 4-8 step mode."
    )
    safety_checker: bool = Field(
        False, description="Run the pipeline's safety checker if it has one."
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        "auto", description="auto: CUDA, else Apple MPS, else CPU."
    )
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: float16 on CUDA and MPS, float32 on the CPU."
    )
    compile: bool = Field(
        False,
        description="torch.compile the UNet and VAE decoder at start (slow start, faster runs).",
    )
    compile_mode: Literal[
        "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"
    ] = Field(
        "reduce-overhead",
        description=(
            "torch.compile mode of the UNet; reduce-overhead (CUDA graphs) measured fastest."
        ),
    )
    compile_warmup_size: int = Field(
        512, ge=64, le=2048, description="Image side of the compile warm-up."
    )
    compile_warmup_batches: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        [1],
        min_length=1,
        description="Batch sizes to compile at start; any other size compiles at its first use.",
    )
    load_at_start: bool = Field(False, description="Load at start instead of at the first request.")
    local_files_only: bool = Field(False, description="Never download (also set HF_HUB_OFFLINE=1).")


class QueueConfig(StrictModel):
    """How image requests wait and are batched."""

    max_batch: int = Field(
        8, ge=1, le=64, description="Requests run together in one pipeline call."
    )
    batch_window_ms: int = Field(40, ge=0, le=5000, description="How long to gather a batch.")
    max_queue: int = Field(32, ge=1, description="Requests waiting at most; beyond: a busy reply.")
    per_user: int = Field(2, ge=1, description="Requests one user may have waiting or running.")
    progress_interval_s: float = Field(2.0, ge=0.2, description="Seconds between progress edits.")


class A1111Config(StrictModel):
    """A remote AUTOMATIC1111-compatible API (A1111, Forge, SD.Next, koboldcpp)."""

    base_url: str = Field("", description="e.g. http://gpu-box:7860")
    timeout_s: float = Field(300.0, gt=0, description="Seconds to wait for one image.")
    sampler: str = Field("", description="Sampler name the server knows; empty: its default.")
    api_key_env: str | None = Field(None, description="Environment variable with a bearer token.")


class GpuConfig(StrictModel):
    """Cool down before model and image jobs when the GPU is hot (NVIDIA, through NVML)."""

    enabled: bool = Field(
        True, description="Watch NVIDIA GPUs through NVML (none: reported, never blocks)."
    )
    max_temperature_c: int = Field(
        75, ge=30, le=110, description="Before a model or image job, wait while any GPU is hotter."
    )
    hysteresis_c: int = Field(5, ge=0, le=40, description="Resume once this far under the limit.")
    poll_s: float = Field(5.0, gt=0, description="Seconds between readings while cooling.")
    max_wait_s: float = Field(600.0, gt=0, description="Give up cooling and go on after this long.")


class ImagesConfig(StrictModel):
    """Image requests: who writes the prompt, limits, and the generator backend."""

    backend: Literal["none", "diffusers", "a1111"] = Field(
        "none", description="none: image requests are declined politely."
    )
    prompt_character: str = Field(
        "", description="Character that writes Stable Diffusion prompts; empty: the synthesizer."
    )
    default_steps: int = Field(25, ge=1, description="Denoising steps when /sd names none.")
    max_steps: int = Field(50, ge=1, description="Most steps a request may ask for.")
    default_size: str = Field(
        "512x512", pattern=r"^\d+x\d+$", description="WIDTHxHEIGHT when /sd names none."
    )
    max_pixels: int = Field(
        1024 * 1024, ge=4096, description="Largest width × height a request may ask for."
    )
    max_prompt_chars: int = Field(1000, ge=10, description="Longest prompt (and negative prompt).")
    guidance: float = Field(7.5, ge=0, le=30, description="Classifier-free guidance scale.")
    confirm: bool = Field(
        False,
        description="Show a prompt a character wrote and draw it only when the user says yes "
        "or sends an edited prompt (/sd with a prompt of your own is drawn at once).",
    )
    confirm_timeout_s: float = Field(
        600.0, gt=0, description="How long such a proposal waits for an answer."
    )
    diffusers: DiffusersConfig = DiffusersConfig()
    a1111: A1111Config = A1111Config()
    queue: QueueConfig = QueueConfig()
