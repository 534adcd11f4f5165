"""The `mombot` command line: chat in the terminal, run the platform bots, check the setup."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from adapters.console import ConsoleAdapter
from bot import __version__
from bot.app import App
from bot.characters import add_characters_arguments, run_characters
from bot.config import ConfigError, MombotConfig, Secrets, load_config
from bot.embedded import EmbeddedServerError
from bot.eval.evaluate import add_arguments as add_eval_arguments
from bot.eval.evaluate import run_eval
from brain.brain import Brain
from brain.errors import MombotError
from brain.redaction import install_redaction, redact

log = logging.getLogger("mombot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mombot",
        description="A mixture-of-characters chat bot for Discord, Matrix and the terminal, "
        "on local OpenAI-compatible models.",
        epilog="examples:\n  mombot chat\n  mombot --config my.toml run\n"
        "  mombot check --config my.toml\n  mombot eval --set facts --think 0\n"
        "every config key: docs/CONFIGURATION.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mombot {__version__}")
    config_help = "config file (default: ./config.toml if present)"
    parser.add_argument("--config", type=Path, default=None, help=config_help)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("chat", "chat in this terminal (reads stdin when piped)"),
        ("web", "chat on a local web page (http://127.0.0.1:8765/ by default)"),
        ("run", "run every enabled platform (Discord, Matrix, web) until SIGTERM or Ctrl-C"),
        ("check", "validate the config, reach every model endpoint, log in to each platform"),
        ("health", "ask the running bot's /healthz (a container health check)"),
        ("eval", "measure whether the mixture answers better than its members"),
        ("characters", "import, export and list characters: Tavern character cards"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        # --config after the command too; SUPPRESS keeps a value given before it
        command.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
        if name == "eval":
            add_eval_arguments(command)
        if name == "characters":
            add_characters_arguments(command)
    return parser


ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class PlatformAdapter(Protocol):
    """What `mombot run` does with each platform's adapter: run it until the end, close it."""

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class JsonLogFormatter(JsonFormatter):
    """One JSON object per record, its traceback masked like the message."""

    def formatException(self, ei: ExcInfo) -> str:  # logging's own name
        return redact(str(super().formatException(ei)))


class OneLineFormatter(logging.Formatter):
    """One record per line: the line breaks of a message or a traceback are written as
    `\\n`, so tools that read the log line by line keep each record whole."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


def setup_logging(config: MombotConfig, data_dir: Path, *, quiet_console: bool) -> None:
    """The one logging setup: the full log to data_dir/mombot.log, and stderr (only
    warnings while chatting or running the platforms: a chat library logs a line per
    event); readable lines or JSON (bot.log_format); secrets masked."""
    data_dir.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(data_dir / "mombot.log", encoding="utf-8")
    stderr_handler = logging.StreamHandler(sys.stderr)
    stderr_handler.setLevel(logging.WARNING if quiet_console else logging.NOTSET)
    if config.bot.log_format == "json":
        for handler in (file_handler, stderr_handler):
            handler.setFormatter(JsonLogFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        file_handler.setFormatter(
            OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        stderr_handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s"))
    handlers = [install_redaction(h) for h in (file_handler, stderr_handler)]
    logging.basicConfig(level=config.bot.log_level, handlers=handlers, force=True)
    for noisy in ("httpx", "httpx2", "httpcore", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    if args.command == "characters":  # it edits the config: it reads it itself
        return run_characters(args)
    try:
        config, secrets = load_config(args.config)
    except ConfigError as exc:
        print(f"mombot: config error:\n{exc}", file=sys.stderr)
        return 2
    if args.command == "health":
        return _health(config)
    quiet = args.command in ("chat", "run", "eval", "web")
    setup_logging(config, Path(config.bot.data_dir), quiet_console=quiet)
    runners = {"chat": _chat, "run": _run, "check": _check, "web": _web}
    runners["eval"] = lambda config, secrets: run_eval(config, secrets, args)
    try:
        return asyncio.run(runners[args.command](config, secrets))
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
        return 130
    except (EmbeddedServerError, MombotError) as exc:
        text = exc.user_message if isinstance(exc, MombotError) else str(exc)
        print(f"mombot: {text}", file=sys.stderr)
        return 1


def _health(config: MombotConfig) -> int:
    """Exit 0 when the running bot's /healthz says ok (the Docker HEALTHCHECK)."""
    if not config.http.enabled:
        print("mombot: the status endpoint is off. Fix: set http.enabled = true", file=sys.stderr)
        return 1
    host = "127.0.0.1" if config.http.host in ("", "0.0.0.0", "::") else config.http.host
    url = f"http://{host}:{config.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            print(f"{url}: {response.read().decode()}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"{url}: {exc.code} {exc.read().decode()}", file=sys.stderr)
    except OSError as exc:
        print(f"{url}: not answering ({exc})", file=sys.stderr)
    return 1


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


_signal_tasks: set[asyncio.Task[None]] = set()


def _stop_on_sigterm(brain: Brain, grace_s: float, work: asyncio.Task[Any]) -> asyncio.Event:
    """SIGTERM: take no new messages, give replies in progress `grace_s`, then stop `work`.

    Only `work` (the adapters running) is cancelled, never the task that will close the
    app afterwards: a cancel landing while it closes would leave things open. Returns an
    event set once SIGTERM came, so the caller can tell this stop (exit 0) from Ctrl-C,
    which asyncio turns into KeyboardInterrupt (exit 130).
    """
    loop = asyncio.get_running_loop()
    requested = asyncio.Event()

    async def stop() -> None:
        requested.set()
        log.info("SIGTERM: stopping; replies in progress get up to %.0f s", grace_s)
        await brain.shutdown(grace_s)
        work.cancel()

    def on_signal() -> None:
        task = loop.create_task(stop())
        _signal_tasks.add(task)
        task.add_done_callback(_signal_tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_signal)
    return requested


async def _chat(config: MombotConfig, secrets: Secrets) -> int:
    async with App(config, secrets, progress=_progress) as app:
        assert app.brain is not None
        adapter = ConsoleAdapter(
            app.brain,
            config.console,
            stdin=sys.stdin,
            stdout=sys.stdout,
            images_dir=app.data_dir / "images",
        )
        work = asyncio.create_task(adapter.run())
        sigterm = _stop_on_sigterm(app.brain, config.bot.shutdown_grace_s, work)
        try:
            await work
        except asyncio.CancelledError:
            if not sigterm.is_set():
                raise
            log.info("stopped on SIGTERM")
    return 0


async def _web(config: MombotConfig, secrets: Secrets) -> int:
    """`mombot web`: the page alone (`mombot run` serves it beside the platforms)."""
    alone = {
        "web": config.web.model_copy(update={"enabled": True}),
        "discord": config.discord.model_copy(update={"enabled": False}),
        "matrix": config.matrix.model_copy(update={"enabled": False}),
    }
    return await _run(config.model_copy(update=alone), secrets)


async def _run(config: MombotConfig, secrets: Secrets) -> int:
    """Run every enabled platform until SIGTERM or Ctrl-C."""
    if not (config.discord.enabled or config.matrix.enabled or config.web.enabled):
        print(
            "mombot: no platform is enabled (discord.enabled, matrix.enabled, web.enabled). "
            "Use `mombot chat` for the terminal, `mombot web` for the page.",
            file=sys.stderr,
        )
        return 2
    async with App(config, secrets, progress=_progress) as app:
        assert app.brain is not None
        adapters: list[PlatformAdapter] = []
        if config.discord.enabled:  # platform libraries load only when used
            from adapters.discord import DiscordAdapter

            token = _reveal(secrets.discord_token)
            assert token is not None, "the config's validation asks for DISCORD_TOKEN"
            adapters.append(DiscordAdapter(app.brain, config.discord, token))
        if config.matrix.enabled:
            from adapters.matrix import MatrixAdapter

            adapters.append(
                MatrixAdapter(
                    app.brain,
                    config.matrix,
                    data_dir=app.data_dir,
                    password=_reveal(secrets.matrix_password),
                    access_token=_reveal(secrets.matrix_access_token),
                )
            )

        if config.web.enabled:
            from adapters.web import WebAdapter, WebError

            try:
                web = WebAdapter(app.brain, config.web, _reveal(secrets.web_token))
            except WebError as exc:
                print(f"mombot: {exc}", file=sys.stderr)
                return 2
            where = await web.start()
            guard = " (it asks for MOMBOT_WEB_TOKEN once)" if secrets.web_token else ""
            _progress(f"mombot: the chat page is at {where}{guard}")
            adapters.append(web)

        async def run_all() -> None:
            await asyncio.gather(*(adapter.run() for adapter in adapters))

        on = " and ".join(type(adapter).__name__.removesuffix("Adapter") for adapter in adapters)
        _progress(f"mombot: running on {on}; the full log is {app.data_dir / 'mombot.log'}")
        work = asyncio.create_task(run_all())
        sigterm = _stop_on_sigterm(app.brain, config.bot.shutdown_grace_s, work)
        try:
            await work
        except asyncio.CancelledError:
            if not sigterm.is_set():
                raise
            log.info("stopping on SIGTERM")
        except Exception as exc:  # a platform's start failure in words, anything else raised
            message = _platform_error(exc)
            if message is None:
                raise
            print(f"mombot: {message}", file=sys.stderr)
            return 1
        finally:
            for adapter in adapters:
                await adapter.close()
    return 0


def _platform_error(exc: Exception) -> str | None:
    """A platform's start-up failure in words a self-hoster can act on."""
    import aiohttp

    if type(exc).__name__ == "MatrixError":
        return (
            f"Matrix: {exc}. Fix: check matrix.homeserver, matrix.user_id "
            "and the password or token."
        )
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        return f"cannot reach the chat server ({exc}). Fix: check this machine's network and DNS."
    import discord

    if isinstance(exc, discord.LoginFailure):
        return (
            "Discord rejected the token. Fix: check MOMBOT_DISCORD_TOKEN "
            "(Developer Portal → Bot → Reset Token)."
        )
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return (
            "Discord refused the Message Content intent. Fix: enable it in the Developer Portal "
            "(your application → Bot → Privileged Gateway Intents → Message Content)."
        )
    return None


async def _check(config: MombotConfig, secrets: Secrets) -> int:
    print("config: ok")
    failures = 0
    async with App(config, secrets, progress=_progress, serve_status=False) as app:
        assert app.brain is not None
        for name, client in app.brain.clients.items():
            try:
                models = await client.list_models()
            except MombotError as exc:
                failures += 1
                print(f"endpoint {name} ({client.config.base_url}): FAILED — {exc.user_message}")
                continue
            print(f"endpoint {name} ({client.config.kind}, {client.config.base_url}): ok")
            print(f"  models: {', '.join(models) or '(none listed)'}")
        for character in config.characters:
            client = app.brain.clients[character.endpoint]
            try:
                info = await client.model_info(character.model)
                tokens = await client.count_tokens(character.model, "Hello, world!")
            except MombotError as exc:
                failures += 1
                print(f"character {character.name}: FAILED — {exc.user_message}")
                continue
            trained = f", trained for {info.trained_context}" if info.trained_context else ""
            print(
                f"character {character.name}: {character.endpoint}/{character.model}, "
                f"context {info.context_window} tokens ({info.source}{trained}), "
                f"'Hello, world!' = {tokens} tokens"
            )
            if character.vision is None:
                seen = {True: "yes", False: "no", None: "no (the server does not say)"}[info.vision]
                print(f"  vision: {seen}, from the server")
            elif info.vision is not None and info.vision != character.vision:
                print(
                    f"  note: the server says this model {'can' if info.vision else 'cannot'} "
                    f"see images, but vision = {str(character.vision).lower()}"
                )
        print(f"history: {app.brain.history.url.split('://')[0]} ok")
        for finding in await _check_platforms(config, secrets, app.data_dir):
            failures += not finding.ok
            print(finding.line)
    print("check: " + ("all good" if not failures else f"{failures} problem(s)"))
    return 0 if not failures else 1


async def _check_platforms(config: MombotConfig, secrets: Secrets, data_dir: Path) -> list[Any]:
    """Log in to each enabled platform, as `mombot run` would (adapters.checks)."""
    from adapters.checks import check_discord, check_matrix

    findings = []
    if config.discord.enabled and secrets.discord_token is not None:
        findings += await check_discord(secrets.discord_token.get_secret_value())
    if config.matrix.enabled:
        findings += await check_matrix(
            config.matrix,
            data_dir,
            password=_reveal(secrets.matrix_password),
            access_token=_reveal(secrets.matrix_access_token),
        )
    return findings


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None
