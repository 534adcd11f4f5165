"""mombot's one typed config object: `config.toml` plus environment variables for secrets.

Loaded once at start and validated completely; any problem ends the start with
one line per problem that names the key and the fix, never a traceback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from adapters.config import ConsoleConfig, DiscordConfig, MatrixConfig, WebConfig
from bot.character_files import CharacterFileError, with_files
from bot.embedded import EmbeddedConfig, EmbeddedServerError, resolve_model_path
from brain.characters.lorebook import Lore
from brain.config import (
    AttachmentsConfig,
    ChannelsConfig,
    CharacterConfig,
    EndpointConfig,
    GpuConfig,
    HistoryConfig,
    ImagesConfig,
    MemoryConfig,
    MixtureConfig,
    RoutingConfig,
    StrictModel,
)
from brain.extensions import available_extensions

DEFAULT_CHARACTERS = [
    (
        "logic",
        "You are Logic. Reason step by step, check facts and numbers, and give a "
        "precise, well-argued answer.",
    ),
    (
        "creativity",
        "You are Creativity. Offer original ideas, vivid examples and unexpected "
        "angles, while still answering the question.",
    ),
    (
        "empathy",
        "You are Empathy. Notice how the person feels and what they need, and answer "
        "with warmth and tact.",
    ),
    (
        "knowledge",
        "You are Knowledge. Bring in relevant facts, background and sources of "
        "understanding; say when you are unsure.",
    ),
    (
        "critic",
        "You are the Critic. Point out pitfalls, missing pieces and likely mistakes, "
        "then give the answer you think holds up.",
    ),
]
DEFAULT_PERSONA = (
    "You are mom, a warm, practical and kind assistant in a group chat. Answer clearly and briefly."
)


def default_characters() -> list[CharacterConfig]:
    members = [CharacterConfig(name=n, persona=p, max_tokens=128) for n, p in DEFAULT_CHARACTERS]
    return [*members, CharacterConfig(name="mom", persona=DEFAULT_PERSONA, role="synthesizer")]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and how to fix it."""


class BotConfig(StrictModel):
    """Where mombot keeps its files, and how it logs and stops."""

    data_dir: str = Field("data", description="Folder for the history database and logs.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO",
        description="Least important log records kept (the log file is data_dir/mombot.log).",
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line."
    )
    shutdown_grace_s: float = Field(
        15.0,
        ge=0,
        le=300,
        description="On SIGTERM, how long replies in progress may take to finish.",
    )


class HttpConfig(StrictModel):
    """An optional HTTP endpoint for operators: /metrics (Prometheus) and /healthz."""

    enabled: bool = Field(False, description="Serve /metrics and /healthz.")
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 inside a container.")
    port: int = Field(9464, ge=0, le=65535, description="Port to listen on (0: any free port).")


class ExtensionsConfig(BaseModel):
    """`enabled` lists extensions; any other key is one extension's settings table."""

    model_config = ConfigDict(extra="allow")
    enabled: list[str] = Field(
        default_factory=lambda: ["deep_thinking"],
        description='Extensions to load (Python entry points "mombot.extensions").',
    )

    @property
    def settings(self) -> dict[str, dict[str, Any]]:
        return dict(self.model_extra or {})


class MombotConfig(StrictModel):
    """Everything mombot reads from config.toml."""

    bot: BotConfig = BotConfig()
    history: HistoryConfig = HistoryConfig()
    channels: ChannelsConfig = ChannelsConfig()
    memory: MemoryConfig = MemoryConfig()
    embedded: EmbeddedConfig = EmbeddedConfig()
    endpoints: dict[str, EndpointConfig] = Field(default_factory=dict)
    characters: list[CharacterConfig] = Field(default_factory=default_characters, min_length=1)
    mixture: MixtureConfig = MixtureConfig()
    routing: RoutingConfig = RoutingConfig()
    attachments: AttachmentsConfig = AttachmentsConfig()
    images: ImagesConfig = ImagesConfig()
    gpu: GpuConfig = GpuConfig()
    http: HttpConfig = HttpConfig()
    extensions: ExtensionsConfig = ExtensionsConfig()
    console: ConsoleConfig = ConsoleConfig()
    discord: DiscordConfig = DiscordConfig()
    matrix: MatrixConfig = MatrixConfig()
    web: WebConfig = WebConfig()
    lorebooks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Lorebooks for every character in one channel: its key (as /debug and the "
        'log name it: "discord:1234", "matrix:!room:server", "web:main") → files, relative to '
        "the config file.",
    )
    channel_lore: dict[str, Lore] = Field(
        default_factory=dict, description="Set from `lorebooks` when the config is read."
    )

    @property
    def embedded_active(self) -> bool:
        """The bundled server runs when asked to, or by default when no endpoint is set."""
        if self.embedded.enabled is None:
            return not self.endpoints
        return self.embedded.enabled

    @model_validator(mode="after")
    def _check_references(self) -> MombotConfig:
        if "embedded" in self.endpoints:
            raise ValueError("endpoints.embedded: this name is reserved for the bundled model")
        known = set(self.endpoints) | ({"embedded"} if self.embedded_active else set())
        for i, character in enumerate(self.characters):
            if character.endpoint not in known:
                choices = ", ".join(sorted(known)) or "none configured"
                raise ValueError(
                    f"characters[{i}].endpoint: no endpoint named '{character.endpoint}' "
                    f"(configured: {choices}). Fix: add [endpoints.{character.endpoint}] "
                    "or use one of those"
                )
        names = [c.name for c in self.characters]
        if len(set(names)) != len(names):
            raise ValueError("characters: two characters share a name. Fix: rename one")
        if not any(c.enabled for c in self.characters):
            raise ValueError("characters: every character is disabled. Fix: enable at least one")
        if sum(c.role == "synthesizer" for c in self.characters) > 1:
            raise ValueError(
                'characters: more than one synthesizer. Fix: keep one role = "synthesizer"'
            )
        if (
            self.routing.mode in ("hybrid", "llm")
            and self.routing.endpoint
            and self.routing.endpoint not in known
        ):
            raise ValueError(
                f"routing.endpoint: no endpoint named '{self.routing.endpoint}'. "
                'Fix: name a configured endpoint, or set routing.mode = "embedding" or "off"'
            )
        if self.images.prompt_character and self.images.prompt_character not in names:
            raise ValueError(
                f"images.prompt_character: no character named '{self.images.prompt_character}'. "
                "Fix: name one of the characters, or leave it empty for the synthesizer"
            )
        summary = self.memory.summary_character
        if summary and summary not in names:
            raise ValueError(
                f"memory.summary_character: no character named '{summary}'. "
                "Fix: name one of the characters, or leave it empty for the synthesizer"
            )
        if self.images.backend == "diffusers" and not self.images.diffusers.model:
            raise ValueError(
                "images.diffusers.model: empty. Fix: a Hugging Face id (e.g. "
                '"stable-diffusion-v1-5/stable-diffusion-v1-5"), a local folder '
                "or a .safetensors file"
            )
        if self.images.backend == "a1111" and not self.images.a1111.base_url:
            raise ValueError('images.a1111.base_url: empty. Fix: e.g. "http://gpu-box:7860"')
        return self


class Secrets(BaseModel):
    """Secrets come only from the environment (or a .env file), never from config.toml."""

    discord_token: SecretStr | None = None
    matrix_password: SecretStr | None = None
    matrix_access_token: SecretStr | None = None
    database_url: SecretStr | None = None  # MOMBOT_DATABASE_URL, over history.database_url
    web_token: SecretStr | None = None  # MOMBOT_WEB_TOKEN: the page off this machine
    endpoint_keys: dict[str, SecretStr] = Field(default_factory=dict)


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[MombotConfig, Secrets]:
    """Read, validate and cross-check the configuration, or raise `ConfigError`."""
    env = dict(env) if env is not None else _environment()
    source = "built-in defaults"
    raw: dict[str, Any] = {}
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: no such file. Fix: pass --config with an existing file"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid TOML ({exc}). Fix: correct the syntax there"
            ) from None
    try:
        config = MombotConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    _check_extensions(config, source)
    try:
        config = with_files(config, path.parent if path is not None else Path.cwd())
    except CharacterFileError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    secrets = _read_secrets(config, env, source)
    if config.embedded_active:
        try:
            resolve_model_path(config.embedded)
        except EmbeddedServerError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return config, secrets


def _check_extensions(config: MombotConfig, source: str) -> None:
    """Validate each listed extension's settings table with that extension's own model.

    An extension that is not installed or does not import is left to the brain, which
    disables it with a logged error; the bot still starts.
    """
    installed = available_extensions()
    for name, table in config.extensions.settings.items():
        if name not in config.extensions.enabled:
            raise ConfigError(
                f"{source}: extensions.{name}: settings for an extension that is not enabled. "
                f'Fix: add "{name}" to extensions.enabled, or remove the table'
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"{source}: extensions.{name}: expected a table. Fix: write [extensions.{name}]"
            )
        if name not in installed:
            continue
        try:
            installed[name].load().settings_model.model_validate(table)
        except ValidationError as exc:
            message = format_validation_error(source, exc)
            raise ConfigError(
                message.replace(f"{source}: ", f"{source}: extensions.{name}.")
            ) from None
        except Exception:  # noqa: S112  (a broken extension is the brain's to report)
            continue


def _environment() -> dict[str, str]:
    """The process environment over the values of a .env file in the working folder."""
    values = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    values.update(os.environ)
    return values


def _read_secrets(config: MombotConfig, env: Mapping[str, str], source: str) -> Secrets:
    def secret(name: str) -> SecretStr | None:
        value = env.get(name, "").strip()
        return SecretStr(value) if value else None

    secrets = Secrets(
        discord_token=secret("MOMBOT_DISCORD_TOKEN"),
        matrix_password=secret("MOMBOT_MATRIX_PASSWORD"),
        matrix_access_token=secret("MOMBOT_MATRIX_ACCESS_TOKEN"),
        database_url=secret("MOMBOT_DATABASE_URL"),
        web_token=secret("MOMBOT_WEB_TOKEN"),
    )
    if config.discord.enabled and secrets.discord_token is None:
        raise ConfigError(
            f"{source}: discord.enabled is true but MOMBOT_DISCORD_TOKEN is not set. "
            "Fix: export it (or put it in .env), or set discord.enabled = false"
        )
    if config.matrix.enabled and not (secrets.matrix_password or secrets.matrix_access_token):
        raise ConfigError(
            f"{source}: matrix.enabled is true but neither MOMBOT_MATRIX_PASSWORD nor "
            "MOMBOT_MATRIX_ACCESS_TOKEN is set. Fix: export one (or put it in .env), "
            "or set matrix.enabled = false"
        )
    for name, endpoint in config.endpoints.items():
        if endpoint.api_key_env:
            key = secret(endpoint.api_key_env)
            if key is None:
                raise ConfigError(
                    f"{source}: endpoints.{name}.api_key_env names {endpoint.api_key_env}, "
                    "which is not set. Fix: export it (or put it in .env), or remove api_key_env"
                )
            secrets.endpoint_keys[name] = key
    return secrets


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add it",
    "int_parsing": "write a whole number, without quotes",
    "int_type": "write a whole number, without quotes",
    "float_parsing": "write a number, without quotes",
    "float_type": "write a number, without quotes",
    "bool_parsing": "write true or false, without quotes",
    "bool_type": "write true or false, without quotes",
    "string_type": 'write text in quotes, e.g. "value"',
    "literal_error": "use one of the allowed values",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "too_short": "add at least one entry",
    "string_too_short": "write a non-empty value",
    "dict_type": "write a [section] table",
    "list_type": "write a list, e.g. [[characters]] tables",
}


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: file, dotted key, what is wrong, and the fix."""
    lines = []
    for error in exc.errors(include_url=False):
        key = _dotted(error["loc"])
        message = error["msg"]
        if error["type"] == "value_error":  # our own cross-checks already say key and fix
            lines.append(f"{source}: {message.removeprefix('Value error, ')}")
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        got = ""
        if error["type"] not in ("missing", "extra_forbidden"):
            got = f" (got {error['input']!r})"
        fix = _FIXES.get(error["type"], "correct the value")
        lines.append(f"{source}: {key}: {message}{got}. Fix: {fix}")
    return "\n".join(lines)


def _dotted(loc: tuple[int | str, ...]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key or "(top level)"
