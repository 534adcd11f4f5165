"""Docker cannot run here, so the container files are checked against what does run:
the install script, the CLI, the config loader and the generated configuration reference."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import yaml
from dotenv import dotenv_values

from bot.cli import build_parser
from bot.config import load_config
from bot.reference import config_reference

ROOT = Path(__file__).resolve().parent.parent


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), " ".join(rest.split())))
    return out


def test_the_image_installs_mombot_only_through_the_readme_install_script() -> None:
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    installs = [r for r in runs if "install.sh" in r]
    assert installs == ["scripts/install.sh --torch ${VARIANT} && rm -rf /root/.cache"]
    assert not [r for r in runs if re.search(r"\bpip\b|\buv\b|\bpoetry\b", r)], (
        "installs outside install.sh"
    )
    args = dict(a.split("=", 1) for i, a in dockerfile_instructions() if i == "ARG" and "=" in a)
    assert args["VARIANT"] == "cpu"  # the slim image is the default


def test_install_script_knows_both_variants_and_refuses_others() -> None:
    script = (ROOT / "scripts/install.sh").read_text()
    assert re.search(r"^\s*cpu\) .*--index-url https://download.pytorch.org/whl/cpu", script, re.M)
    assert re.search(r"^\s*cuda\) ", script, re.M)
    pin = re.search(r'"(torch==[^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pin and 'grep -o \'"torch==[^"]*"\' pyproject.toml' in script  # one pin, read from there
    bad = subprocess.run(
        ["bash", str(ROOT / "scripts/install.sh"), "--torch", "tpu"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--torch must be cpu or cuda" in bad.stderr


def test_the_image_runs_commands_the_cli_has_with_a_config_that_loads(tmp_path: Path) -> None:
    instructions = dict(dockerfile_instructions())  # the last of each kind: the run stage's
    parser = build_parser()
    cmd = shlex.split(instructions["CMD"].strip("[]").replace(",", " "))
    health = shlex.split(
        instructions["HEALTHCHECK"].split("CMD", 1)[1].strip().strip("[]").replace(",", " ")
    )
    for command in (cmd, health):
        assert command[0] == "mombot"
        parsed = parser.parse_args(command[1:])
        assert parsed.config == Path("/data/config.toml")
    assert parser.parse_args(health[1:]).command == "health"
    entrypoint = ROOT / instructions["ENTRYPOINT"].strip('[]"').removeprefix("/app/")
    assert entrypoint.stat().st_mode & 0o111, "the entrypoint must be executable"
    assert "/app/docker/config.toml" in entrypoint.read_text()

    config, _ = load_config(ROOT / "docker/config.toml", env={})
    assert config.bot.data_dir == "/data" and config.http.enabled and config.http.host == "0.0.0.0"
    assert f"EXPOSE {config.http.port}" in (ROOT / "Dockerfile").read_text()
    assert config.embedded_active  # the embedded default works in the container
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "docker" not in ignored and "scripts" not in ignored and ".venv" in ignored


def test_compose_stack_is_consistent_with_its_env_file_and_config() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: v or "" for k, v in dotenv_values(ROOT / ".env.example").items()}
    assert set(compose["services"]) == {"postgres", "ollama", "ollama-pull", "mombot"}
    used = set(re.findall(r"\$\{(\w+)\}", (ROOT / "docker-compose.yml").read_text()))
    assert used <= set(env), f"undocumented in .env.example: {used - set(env)}"

    mombot = compose["services"]["mombot"]
    command = mombot["command"]
    assert command[0] == "mombot" and build_parser().parse_args(command[1:]).command == "run"
    config_path = ROOT / command[command.index("--config") + 1].removeprefix("/app/")
    database = mombot["environment"]["MOMBOT_DATABASE_URL"]
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        database = database.replace(f"${{{name}}}", env[name])
    config, secrets = load_config(
        config_path, env={**env, "MOMBOT_DISCORD_TOKEN": "x" * 20, "MOMBOT_DATABASE_URL": database}
    )
    assert secrets.database_url is not None and database.startswith("postgresql+psycopg://")
    assert set(config.endpoints) == {"ollama"} and config.endpoints["ollama"].kind == "ollama"
    assert config.discord.enabled or config.matrix.enabled  # `run` needs a platform
    pulled = set(env["OLLAMA_MODELS"].split())
    assert {c.model for c in config.characters} == pulled, (
        "pull exactly the models the characters use"
    )
    assert mombot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert mombot["depends_on"]["ollama-pull"]["condition"] == "service_completed_successfully"


def test_the_configuration_reference_is_generated_from_the_models() -> None:
    committed = (ROOT / "docs/CONFIGURATION.md").read_text()
    assert committed == config_reference(), (
        "run: .venv/bin/python -m bot.reference > docs/CONFIGURATION.md"
    )
    documented = tomllib.loads((ROOT / "config.toml").read_text())
    for section in documented:  # every section of the example config has its reference
        assert f"## `[{section}]`" in committed or f"## `[[{section}]]`" in committed
    assert "| `database_url` |" in committed and "MOMBOT_DATABASE_URL" in committed


def test_every_folder_of_the_code_is_a_declared_package() -> None:
    """Issue 33 defect 10: a folder setuptools can import but the packages list lacks is left
    out of a built install (and warned about at every install): declare each one."""
    declared = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    folders = {
        ".".join(folder.relative_to(ROOT).parts)
        for top in ("bot", "adapters", "brain")
        for folder in [ROOT / top, *(ROOT / top).rglob("*")]
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.iterdir())
    }
    assert folders == declared


def quick_start_commands() -> list[str]:
    """The commands of the README's quick start, in order (its `sh` code blocks)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Quick start") :]
    section = section[: section.index("\n## ", 1)]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.S)]


def test_ci_runs_the_readme_s_test_command_as_written() -> None:
    """The quick start is two commands: run the bot, run the tests; CI's last command is the
    second, character for character (whatever the README says it is)."""
    run, test = quick_start_commands()
    assert run.startswith("scripts/install.sh") and run.endswith("mombot chat")
    ci = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip()]
    assert ci[-1] == test
