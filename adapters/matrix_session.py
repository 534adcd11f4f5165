"""The Matrix bot's identity, kept in its data folder: device and access token.

The session (user, device, access token) is reused across restarts, so a restart neither
makes a new device nor loses the encryption keys; the file holding the token is private
from its creation on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import nio

from adapters.config import MatrixConfig
from brain.redaction import register_secret

log = logging.getLogger(__name__)


class MatrixError(RuntimeError):
    """A Matrix call failed; the message names the call and the server's answer."""


def check(response: Any, what: str) -> Any:
    """matrix-nio reports failures as returned *Error objects: turn them into exceptions."""
    if isinstance(response, nio.ErrorResponse):
        raise MatrixError(f"{what} failed: {response.status_code} {response.message}")
    return response


class MatrixSession:
    """Logs the bot in (once per device) and keeps what must survive a restart."""

    def __init__(
        self,
        folder: Path,
        config: MatrixConfig,
        encryption: bool,
        *,
        password: str | None = None,
        access_token: str | None = None,
    ) -> None:
        register_secret(password)
        register_secret(access_token)
        self.folder = folder
        self.config = config
        self.encryption = encryption
        self._password = password
        self._access_token = access_token

    @property
    def file(self) -> Path:
        return self.folder / "session.json"

    async def login(self) -> nio.AsyncClient:
        """A client on the stored session (same device), or logged in once and stored."""
        self.folder.mkdir(parents=True, exist_ok=True)
        store = self.folder / "store"
        store.mkdir(exist_ok=True)
        client_config = nio.AsyncClientConfig(
            encryption_enabled=self.encryption, store_sync_tokens=True, request_timeout=60
        )
        client = nio.AsyncClient(
            self.config.homeserver, self.config.user_id, store_path=str(store), config=client_config
        )
        try:
            await self._log_in(client)
        except BaseException:
            await client.close()  # its HTTP session must not outlive a failed login
            raise
        return client

    async def _log_in(self, client: nio.AsyncClient) -> None:
        saved = self._load()
        if saved:
            register_secret(saved["access_token"])
            client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
            log.info("matrix: restored session, device %s", saved["device_id"])
        elif self._access_token:
            client.access_token = self._access_token
            whoami = check(await client.whoami(), "whoami")
            client.restore_login(whoami.user_id, whoami.device_id or "", self._access_token)
            self._save(whoami.user_id, whoami.device_id or "", self._access_token)
        else:
            response = check(
                await client.login(self._password or "", device_name=self.config.device_name),
                "login",
            )
            self._save(response.user_id, response.device_id, response.access_token)
            log.info("matrix: logged in as %s, new device %s", response.user_id, response.device_id)
        if self.encryption and client.should_upload_keys:
            check(await client.keys_upload(), "keys upload")

    def _load(self) -> dict[str, str] | None:
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError):
            return None
        if data.get("user_id") != self.config.user_id and self.config.user_id:
            return None
        return data

    def _save(self, user_id: str, device_id: str, token: str) -> None:
        register_secret(token)
        session = {"user_id": user_id, "device_id": device_id, "access_token": token}
        write_private(self.file, json.dumps(session))


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, from its creation on (it may hold a token)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(descriptor, 0o600)  # a file that existed keeps its mode through O_CREAT
        handle.write(text)
