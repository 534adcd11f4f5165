"""A real Synapse homeserver on loopback for the Matrix tests (SQLite, relaxed rate limits)."""

from __future__ import annotations

import hashlib
import hmac
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bot.embedded import free_port

SECRET = "mombot-test-registration-secret"
RELAXED = "{per_second: 1000, burst_count: 1000}"
FLAT_LIMITS = [
    "rc_message",
    "rc_registration",
    "rc_admin_redaction",
    "rc_3pid_validation",
    "rc_joins_per_room",
    "rc_media_create",
]
NESTED_LIMITS = {
    "rc_login": ["address", "account", "failed_attempts"],
    "rc_joins": ["local", "remote"],
    "rc_invites": ["per_room", "per_user"],
}


@dataclass
class Synapse:
    folder: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Synapse:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        config = self.folder / "homeserver.yaml"
        config.write_text(self._config())
        subprocess.run(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config), "--generate-keys"],
            check=True,
            capture_output=True,
            cwd=self.folder,
        )
        log = open(self.folder / "synapse.out", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(config)],
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/_matrix/client/versions", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"synapse did not start; see {self.folder / 'synapse.out'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def register(self, username: str, password: str = "password", admin: bool = False) -> str:
        """Create a user through the shared-secret admin API; returns the user id."""
        endpoint = f"{self.url}/_synapse/admin/v1/register"
        nonce = httpx.get(endpoint, timeout=10).json()["nonce"]
        message = "\x00".join([nonce, username, password, "admin" if admin else "notadmin"])
        mac = hmac.new(SECRET.encode(), message.encode(), hashlib.sha1).hexdigest()
        body = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": mac,
        }
        response = httpx.post(endpoint, json=body, timeout=10)
        response.raise_for_status()
        return response.json()["user_id"]

    def _config(self) -> str:
        limits = "\n".join(f"{name}: {RELAXED}" for name in FLAT_LIMITS)
        nested = "\n".join(
            f"{name}:\n" + "\n".join(f"  {key}: {RELAXED}" for key in keys)
            for name, keys in NESTED_LIMITS.items()
        )
        return f"""server_name: "localhost"
pid_file: {self.folder}/homeserver.pid
listeners:
  - port: {self.port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: {self.folder}/homeserver.db
log_config: {self._log_config()}
media_store_path: {self.folder}/media
signing_key_path: {self.folder}/signing.key
registration_shared_secret: "{SECRET}"
enable_registration: false
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
url_preview_enabled: false
presence:
  enabled: false
bcrypt_rounds: 4
macaroon_secret_key: "test-macaroon"
form_secret: "test-form"
max_upload_size: 20M
{limits}
{nested}"""

    def _log_config(self) -> Path:
        path = self.folder / "log.yaml"
        path.write_text(
            "version: 1\nformatters:\n  plain:\n"
            "    format: '%(asctime)s %(levelname)s %(name)s %(message)s'\n"
            "handlers:\n  file:\n    class: logging.FileHandler\n"
            f"    filename: {self.folder}/homeserver.log\n"
            "    formatter: plain\nroot:\n  level: WARNING\n  handlers: [file]\n"
            "disable_existing_loggers: false\n"
        )
        return path
