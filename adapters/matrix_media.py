"""Files in Matrix: images, files, audio and video read with a running size cap (decrypted
off the event loop), and images sent.

Since Matrix v1.10 a media message may carry a caption: `filename` names the file and
`body` is then the user's words (when the two differ); without `filename`, `body` is the
file's name.

`info.size` is optional in the spec and several clients and bridges leave it out, so a
file is never refused for not declaring its size: the download stops, and the file is
refused, once more than the limit arrived. Encrypted media are decrypted in a worker
thread (AES over up to the size limit).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any
from urllib.parse import urlparse

import aiohttp
import nio
from nio.crypto import decrypt_attachment

from adapters.common import read_capped
from adapters.intake import DownloadFailed, RemoteFile
from adapters.matrix_session import MatrixError, check

DOWNLOAD_TIMEOUT_S = 60
IMAGE_EVENTS = (nio.RoomMessageImage, nio.RoomEncryptedImage)
# m.image, m.file, m.audio and m.video, plain or encrypted
MEDIA_EVENTS = (nio.RoomMessageMedia, nio.RoomEncryptedMedia)


def is_image(event: nio.Event) -> bool:
    return isinstance(event, IMAGE_EVENTS)


def caption(content: dict[str, Any]) -> str:
    """A media message's words: its `body` when a separate `filename` names the file."""
    body, filename = content.get("body"), content.get("filename")
    if isinstance(body, str) and isinstance(filename, str) and filename and body != filename:
        return body
    return ""


def replied_files(client: nio.AsyncClient, replied: nio.Event | None) -> tuple[RemoteFile, ...]:
    """The picture of the message replied to, if it is one (a reply about a picture)."""
    if replied is None or not is_image(replied):
        return ()
    found = remote_file(client, replied, replied.source.get("content", {}))
    return (found,) if found is not None else ()


def remote_file(
    client: nio.AsyncClient, event: nio.Event, content: dict[str, Any]
) -> RemoteFile | None:
    """A media event's file, read only if the message gets that far."""
    if not isinstance(event, MEDIA_EVENTS):
        return None
    info: dict[str, Any] = content["info"] if isinstance(content.get("info"), dict) else {}
    size = info.get("size")
    filename = content.get("filename") if isinstance(content.get("filename"), str) else ""

    async def read(limit: int) -> bytes | None:
        try:
            data = await fetch_capped(client, event.url, limit)
        except (MatrixError, aiohttp.ClientError, TimeoutError) as exc:
            raise DownloadFailed(f"{event.event_id}: {exc}") from exc
        if data is not None and isinstance(event, nio.RoomEncryptedMedia):
            data = await asyncio.to_thread(
                decrypt_attachment, data, event.key["k"], event.hashes["sha256"], event.iv
            )
        return data

    return RemoteFile(
        filename or str(content.get("body") or "file"),
        info.get("mimetype") or getattr(event, "mimetype", None) or "",
        size if isinstance(size, int) else None,
        read,
    )


async def fetch_capped(client: nio.AsyncClient, mxc: str, limit: int) -> bytes | None:
    """The media's bytes, or None once more than `limit` arrived (the download stops)."""
    where = urlparse(mxc)
    method, path = nio.Api.download(
        where.netloc, where.path.strip("/"), access_token=client.access_token
    )
    response = await client.send(method, path, timeout=DOWNLOAD_TIMEOUT_S)
    async with response:
        if response.status != 200:
            raise MatrixError(f"download failed: HTTP {response.status}")
        if response.content_length is not None and response.content_length > limit:
            return None
        return await read_capped(response.content.iter_chunked(64 * 1024), limit)


async def upload_image(
    client: nio.AsyncClient, data: bytes, filename: str, caption: str, *, encrypt: bool
) -> dict[str, Any]:
    """Upload a PNG (encrypted for an encrypted room); the m.image content that shows it."""
    from PIL import Image

    width, height = await asyncio.to_thread(lambda: Image.open(io.BytesIO(data)).size)
    upload, keys = await client.upload(
        io.BytesIO(data),
        content_type="image/png",
        filename=filename,
        encrypt=encrypt,
        filesize=len(data),
    )
    check(upload, "upload")
    content: dict[str, Any] = {
        "msgtype": "m.image",
        "body": caption,
        "filename": filename,
        "info": {"mimetype": "image/png", "size": len(data), "w": width, "h": height},
    }
    if encrypt and keys:
        content["file"] = {**keys, "url": upload.content_uri}
    else:
        content["url"] = upload.content_uri
    return content
