"""The console adapter: chat with mombot in a terminal, or script it through pipes.

Interactive when stdin and stdout are terminals (readline editing, prompts);
otherwise every input line is one message and every reply is written followed
by a blank line, so a script can read the answers back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from adapters.config import ConsoleConfig
from adapters.intake import Arrival, Intake
from brain.brain import Brain
from brain.outbox import Capabilities

log = logging.getLogger(__name__)

QUIT_WORDS = {"/quit", "/exit", "/bye"}
BOT_LABEL = "mombot"  # who writes notes and command answers: the bot as a whole
DIM, NORMAL = "\x1b[2m", "\x1b[0m"  # ANSI faint text
CLEAR_LINE = "\r\x1b[2K"  # back to the line's start, and blank it
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class ConsoleOutbox:
    """Writes replies to a text stream. Streaming edits print only the new text.

    `live` (a terminal): a faint status line shows what the bot is doing and for how long
    (who has answered, the /think round), ticking each second, until the reply replaces it.
    Piped output never gets one.
    """

    capabilities = Capabilities(max_message_length=1_000_000, edit_interval_s=0.0)

    def __init__(
        self,
        out: TextIO,
        images_dir: Path,
        *,
        labels: bool = False,
        dim: bool = False,
        live: bool = False,
    ) -> None:
        self._out = out
        self._images_dir = images_dir
        self._labels = labels  # a terminal: each message starts with who wrote it
        self._dim = dim  # a terminal: reasoning in faint text
        self._live = live
        self._texts: list[str] = []
        self._started = time.monotonic()
        self._status: str | None = None  # the status line's text while it is shown
        self._ticker: asyncio.Task[None] | None = None
        self._fresh_line = False  # the cursor starts an empty line (where a status was)
        self._wrote = False

    def _write(self, text: str) -> None:
        self._clear_status()
        self._out.write(text)
        self._out.flush()
        self._wrote = True
        self._fresh_line = False

    def _new_line(self) -> str:
        """What starts the next block of output: a line break, unless an empty line is open
        already (call after `_clear_status`)."""
        return "" if self._fresh_line or not self._wrote else "\n"

    async def send(self, text: str) -> int:
        """A message of the bot as a whole: a note, a command's answer."""
        return await self.send_as(BOT_LABEL, text)

    async def send_as(self, author: str, text: str) -> int:
        """A message that `author` wrote (`brain.outbox.AuthoredOutbox`)."""
        self._clear_status()
        label = f"{author}> " if self._labels else ""
        self._write((self._new_line() if self._texts else "") + label + text)
        self._texts.append(text)
        return len(self._texts) - 1

    async def edit(self, ref: int, text: str) -> None:
        old, self._texts[ref] = self._texts[ref], text
        # the cursor is still where that message ends: only the new text is written
        in_place = self._status is None and not self._fresh_line
        if ref == len(self._texts) - 1 and text.startswith(old) and in_place:
            self._write(text[len(old) :])
            return
        self._clear_status()
        self._write(f"{self._new_line()}(edited) {text}")

    async def send_image(self, data: bytes, filename: str, caption: str) -> int:
        safe = _UNSAFE_NAME.sub("_", Path(filename).name)[:80] or "image.png"
        self._images_dir.mkdir(parents=True, exist_ok=True)
        path = self._images_dir / safe
        await asyncio.to_thread(path.write_bytes, data)
        return await self.send(f"{caption}\n[image saved to {path}]")

    async def send_reasoning(self, text: str) -> None:
        self._clear_status()
        start = "" if self._fresh_line else "\n"
        if self._dim:
            self._write(f"{start}{DIM}💭 {text}{NORMAL}")
        else:
            self._write(f"{start}[reasoning] {text}")

    async def typing(self) -> None:
        await self.progress("thinking")

    async def progress(self, text: str) -> None:
        """Show `text` on the status line (a terminal only); the next message replaces it."""
        if not self._live:
            return
        if self._status is None and self._wrote and not self._fresh_line:
            self._out.write("\n")  # below what is on screen, never over it
            self._fresh_line = True
        self._status = text
        self._render_status()
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())

    def _render_status(self) -> None:
        seconds = time.monotonic() - self._started
        self._out.write(f"{CLEAR_LINE}{DIM}{self._status} · {seconds:.0f} s{NORMAL}")
        self._out.flush()

    async def _tick(self) -> None:
        while self._status is not None:
            await asyncio.sleep(1.0)  # the seconds shown tick on while nothing else is said
            if self._status is not None:
                self._render_status()

    def _clear_status(self) -> None:
        if self._status is None:
            return
        self._status = None
        self._out.write(CLEAR_LINE)
        self._fresh_line = True

    def close(self) -> None:
        """The reply is done: no status line stays behind."""
        self._clear_status()
        self._out.flush()
        if self._ticker is not None:
            self._ticker.cancel()

    async def error(self, text: str) -> None:
        await self.send(f"[!] {text}")


class ConsoleAdapter:
    """Reads lines, hands each to the brain, prints the streamed reply."""

    def __init__(
        self,
        brain: Brain,
        config: ConsoleConfig,
        *,
        stdin: TextIO,
        stdout: TextIO,
        images_dir: Path,
    ) -> None:
        self._intake = Intake(brain, "console")
        self._config = config
        self._stdin = stdin
        self._stdout = stdout
        self._images_dir = images_dir
        self.interactive = stdin.isatty() and stdout.isatty()

    async def run(self) -> None:
        """Chat until end of input or /quit."""
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        ready = threading.Event()  # set when the next prompt may be shown
        ready.set()
        if self.interactive:  # before the reader's first prompt, never through it
            self._stdout.write("mombot — type a message, /help for commands, /quit to leave.\n")
            self._stdout.flush()
        self._start_reader(lines, ready)
        await self._intake.report_lost_jobs(self._notify)
        while True:
            line = await lines.get()
            if line is None or line.strip().lower() in QUIT_WORDS:
                break
            if line.strip():
                # Its own task, so that a shutdown can cancel this reply and not the chat loop.
                reply = asyncio.create_task(self._answer(line))
                with self._ctrl_c_stops_the_reply():
                    await asyncio.wait([reply])
                if not reply.cancelled() and (failure := reply.exception()) is not None:
                    log.error("could not answer a console message", exc_info=failure)
            ready.set()

    @contextlib.contextmanager
    def _ctrl_c_stops_the_reply(self) -> Iterator[None]:
        """While a reply is written, Ctrl-C (SIGINT) stops it and mombot goes on; at the
        prompt it leaves as before. Where signals cannot be caught (not the main thread, or
        Windows) Ctrl-C keeps its usual meaning."""
        loop = asyncio.get_running_loop()
        channel = f"console:{self._config.channel}"
        before = signal.getsignal(signal.SIGINT)  # asyncio.run's own, which ends the chat
        try:
            loop.add_signal_handler(signal.SIGINT, self._intake.brain.stop, channel)
        except (NotImplementedError, RuntimeError, ValueError):
            yield
            return
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, before)  # removing put Python's default back

    async def _notify(self, channel_id: str, text: str) -> None:
        self._stdout.write(f"[!] {text}\n\n")
        self._stdout.flush()

    async def _answer(self, line: str) -> None:
        outbox = ConsoleOutbox(
            self._stdout,
            self._images_dir,
            labels=self.interactive,
            dim=self.interactive,
            live=self.interactive,
        )
        arrival = Arrival(
            platform="console",
            channel_id=self._config.channel,
            author_id=self._config.user_name,
            author_name=self._config.user_name,
            text=line,
            direct=True,  # the person at the terminal runs the bot: its admin
        )
        await outbox.progress("thinking")  # at once: the answer may take a while
        try:
            await self._intake.handle(arrival, outbox)
        finally:
            outbox.close()
        self._stdout.write("\n\n" if not self.interactive else "\n")
        self._stdout.flush()

    def _start_reader(self, lines: asyncio.Queue[str | None], ready: threading.Event) -> None:
        """Read input on a daemon thread, so a blocked read never holds up shutdown.

        Interactively, the thread waits for `ready` before prompting again, so the
        prompt never appears in the middle of a streamed reply.
        """
        loop = asyncio.get_running_loop()
        interactive = self.interactive
        if interactive:
            try:
                import readline  # noqa: F401  (line editing and history for input())
            except ImportError:
                pass

        def read() -> None:
            while True:
                if interactive:
                    ready.wait()
                    ready.clear()
                try:
                    line = input("you> ") if interactive else self._stdin.readline()
                except (EOFError, KeyboardInterrupt, ValueError):
                    line = ""
                    interactive_eof = True
                else:
                    interactive_eof = False
                if interactive_eof or (not interactive and line == ""):
                    loop.call_soon_threadsafe(lines.put_nowait, None)
                    return
                loop.call_soon_threadsafe(lines.put_nowait, line.rstrip("\n"))

        threading.Thread(target=read, name="console-input", daemon=True).start()
