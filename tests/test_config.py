"""Config: the documented default matches the built-in one; every bad config gives one clear
line."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.config import ConfigError, MombotConfig, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_documented_config_equals_builtin_defaults() -> None:
    documented = MombotConfig.model_validate(tomllib.loads((ROOT / "config.toml").read_text()))
    assert documented == MombotConfig()


def test_every_key_of_the_documented_config_has_a_comment() -> None:
    """Each key has a comment on its line, on the line above, or starts a commented group."""
    lines = (ROOT / "config.toml").read_text().splitlines()
    undocumented = [
        line
        for before, line in zip([""] + lines, lines, strict=False)
        if "=" in line
        and not line.lstrip().startswith("#")
        and "#" not in line
        and not before.lstrip().startswith("#")
    ]
    assert undocumented == []


def test_defaults_load_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config, secrets = load_config(None, env={})
    assert config.embedded_active
    assert config.characters[0].endpoint == "embedded"
    assert secrets.discord_token is None


BAD_CONFIGS = [
    (
        "[[characters]]\nname = 'a'\ntemperature = 'hot'\n",
        "characters[0].temperature: Input should be a valid number, unable to parse string as a "
        "number (got 'hot'). Fix: write a number, without quotes",
    ),
    (
        "[bot]\nlog_levle = 'INFO'\n",
        "bot.log_levle: unknown key. Fix: remove it or check its spelling",
    ),
    (
        "[embedded]\nn_ctx = 'big'\n",
        "embedded.n_ctx: Input should be a valid integer, unable to parse string as an integer "
        "(got 'big'). Fix: write a whole number, without quotes",
    ),
    (
        "[endpoints.gpu]\nbase_url = 'http://x/v1'\ntimeout_s = -1\n",
        "endpoints.gpu.timeout_s: Input should be greater than 0 (got -1). Fix: use a larger value",
    ),
    (
        "[[characters]]\nname = 'a'\nendpoint = 'gpu'\n",
        "characters[0].endpoint: no endpoint named 'gpu' (configured: embedded). "
        "Fix: add [endpoints.gpu] or use one of those",
    ),
    (
        "[bot]\nlog_level = 'LOUD'\n",
        "bot.log_level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'LOUD'). "
        "Fix: use one of the allowed values",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD_CONFIGS)
def test_bad_config_gives_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == f"{path}: {expected}"


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[bot\n")
    with pytest.raises(ConfigError, match=r"not valid TOML .*Fix: correct the syntax"):
        load_config(path, env={})


def test_missing_discord_token(tmp_path: Path) -> None:
    path = write(tmp_path, "[discord]\nenabled = true\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}: discord.enabled is true but MOMBOT_DISCORD_TOKEN is not set. "
        "Fix: export it (or put it in .env), or set discord.enabled = false"
    )
    config, secrets = load_config(path, env={"MOMBOT_DISCORD_TOKEN": "abc"})
    assert secrets.discord_token is not None and secrets.discord_token.get_secret_value() == "abc"
    assert "abc" not in repr(secrets)


def test_missing_matrix_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "[matrix]\nenabled = true\n")
    with pytest.raises(ConfigError, match="neither MOMBOT_MATRIX_PASSWORD nor"):
        load_config(path, env={})


def test_missing_endpoint_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[endpoints.gpu]\nbase_url = 'http://x/v1'\napi_key_env = 'GPU_KEY'\n"
        "[[characters]]\nname = 'a'\nendpoint = 'gpu'\n",
    )
    with pytest.raises(
        ConfigError, match=r"endpoints.gpu.api_key_env names GPU_KEY, which is not set"
    ):
        load_config(path, env={})
    _, secrets = load_config(path, env={"GPU_KEY": "k"})
    assert secrets.endpoint_keys["gpu"].get_secret_value() == "k"


def test_unreachable_model_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[embedded]\nmodel_path = '/nowhere/model.gguf'\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}: embedded.model_path: no file at /nowhere/model.gguf. Fix: point it at a .gguf "
        "file, or leave it empty for the bundled SmolLM2 model."
    )


def test_endpoint_configured_means_no_embedded_server(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[endpoints.gpu]\nbase_url = 'http://x/v1'\n[[characters]]\nname = 'a'\nendpoint = 'gpu'\n",
    )
    config, _ = load_config(path, env={})
    assert not config.embedded_active


def test_cli_prints_the_error_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[bot]\nlog_levle = 'INFO'\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(path), "chat"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"mombot: config error:\n{path}: bot.log_levle: unknown key. "
        "Fix: remove it or check its spelling\n"
    )
    assert "Traceback" not in result.stderr


def test_extension_settings_are_validated_by_the_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "[extensions.deep_thinking]\ndefault_rounds = 50\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f"{path}: extensions.deep_thinking.default_rounds: "
        "Input should be less than or equal to 20 (got 50). Fix: use a smaller value"
    )


def test_settings_for_a_disabled_extension_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "[extensions]\nenabled = []\n[extensions.deep_thinking]\nquorum = 0.5\n")
    with pytest.raises(ConfigError, match="settings for an extension that is not enabled"):
        load_config(path, env={})


def test_unknown_prompt_character(tmp_path: Path) -> None:
    path = write(tmp_path, "[images]\nprompt_character = 'picasso'\n")
    with pytest.raises(ConfigError, match=r"images.prompt_character: no character named 'picasso'"):
        load_config(path, env={})


def test_default_character_set_is_a_mixture() -> None:
    config = MombotConfig()
    roles = [(c.name, c.role) for c in config.characters]
    assert roles[-1] == ("mom", "synthesizer")
    assert {n for n, r in roles if r == "member"} == {
        "logic",
        "creativity",
        "empathy",
        "knowledge",
        "critic",
    }
