"""`mombot check` for the chat platforms: can the bot reach them and log in, as configured?

Each check returns findings, one line each, so the command can print them and count the
failures. The platform libraries are imported only when their platform is enabled.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from adapters.config import MatrixConfig

if TYPE_CHECKING:
    import discord

REACH_TIMEOUT_S = 15
TOKEN_SHAPE = re.compile(r"^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$")
TOKEN_FIX = "Fix: copy the token again (Developer Portal → your application → Bot → Reset Token)"


@dataclass(frozen=True)
class Finding:
    ok: bool
    line: str


# -- Matrix ---------------------------------------------------------------------------------


async def check_matrix(
    config: MatrixConfig, data_dir: Path, *, password: str | None, access_token: str | None
) -> list[Finding]:
    """Reach the homeserver, log in (the stored session, the token, or the password), and
    say whether end-to-end encryption is available.

    A password login stores its session where `mombot run` finds it, so the bot then uses
    that same device instead of making another.
    """
    import nio
    from nio.crypto import ENCRYPTION_ENABLED

    from adapters.matrix_session import MatrixError, MatrixSession, check

    where = f"matrix ({config.homeserver})"

    def failed(problem: str, fix: str) -> list[Finding]:
        return [Finding(False, f"{where}: FAILED — {problem}. Fix: {fix}")]

    versions = f"{config.homeserver.rstrip('/')}/_matrix/client/versions"
    try:
        timeout = aiohttp.ClientTimeout(total=REACH_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(versions) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        return failed(f"cannot reach the homeserver ({reason})", "check matrix.homeserver")
    if status != 200:
        return failed(f"{versions} answered HTTP {status}", "check matrix.homeserver")
    encryption = config.encryption and ENCRYPTION_ENABLED
    session = MatrixSession(
        data_dir / "matrix", config, encryption, password=password, access_token=access_token
    )
    client: nio.AsyncClient | None = None
    try:
        client = await session.login()
        whoami = check(await client.whoami(), "whoami")
    except MatrixError as exc:
        return failed(
            str(exc),
            "check matrix.user_id and MOMBOT_MATRIX_PASSWORD or MOMBOT_MATRIX_ACCESS_TOKEN",
        )
    except (aiohttp.ClientError, TimeoutError) as exc:  # the server went away mid-login
        reason = str(exc) or type(exc).__name__
        return failed(f"the login did not finish ({reason})", "try again; check the homeserver")
    finally:
        if client is not None:
            await client.close()
    if encryption:
        crypto = "encryption available"
    elif config.encryption:
        crypto = "encryption UNAVAILABLE (install matrix-nio[e2e]); encrypted rooms are refused"
    else:
        crypto = "encryption off (matrix.encryption = false)"
    return [
        Finding(True, f"{where}: ok — logged in as {whoami.user_id} (device {whoami.device_id})"),
        Finding(True, f"  {crypto}"),
    ]


# -- Discord --------------------------------------------------------------------------------


def discord_token_problem(token: str) -> str | None:
    """What is wrong with the token's form (three dot-separated parts, the first the bot's
    id in base64), or None. Catches a token pasted with quotes, spaces or a part missing."""
    if token.lower().startswith("bot "):
        return "the token starts with 'Bot ': set MOMBOT_DISCORD_TOKEN to the token alone"
    match = TOKEN_SHAPE.match(token)
    if match is None:
        return "the token is not three parts separated by dots"
    first = match.group(1)
    try:
        user_id = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        user_id = ""
    if not user_id.isdigit():
        return "the token's first part is not a bot's id"
    return None


async def check_discord(token: str) -> list[Finding]:
    """The token's form, then (where Discord can be reached) a login and the intents."""
    import discord

    from adapters.discord import required_intents

    problem = discord_token_problem(token)
    if problem is not None:
        return [Finding(False, f"discord: FAILED — {problem}. {TOKEN_FIX}")]
    client = discord.Client(intents=required_intents())
    try:
        await asyncio.wait_for(client.login(token), REACH_TIMEOUT_S)
        return await describe_discord(client)
    except discord.LoginFailure:
        return [Finding(False, f"discord: FAILED — Discord rejected the token. {TOKEN_FIX}")]
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        return [
            Finding(True, "discord: the token's form is right"),
            Finding(
                False,
                f"discord: FAILED — cannot reach Discord to log in ({reason}). "
                "Fix: check this machine's network",
            ),
        ]
    finally:
        await client.close()


async def describe_discord(client: discord.Client) -> list[Finding]:
    """Who the logged-in bot is, and whether its application has the intents it needs."""
    app = await client.application_info()
    flags = app.flags
    name = client.user.name if client.user else app.name
    findings = [Finding(True, f"discord: ok — logged in as {name} (application {app.id})")]
    if flags.gateway_message_content or flags.gateway_message_content_limited:
        findings.append(Finding(True, "  intents: Message Content enabled"))
    else:
        findings.append(
            Finding(
                False,
                "discord: FAILED — the Message Content intent is off, so the bot would see "
                "empty messages. Fix: Developer Portal → your application → Bot → Privileged "
                "Gateway Intents → Message Content",
            )
        )
    return findings
