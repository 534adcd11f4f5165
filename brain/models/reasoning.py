"""Keeping a reasoning model's thoughts out of its answer.

Reasoning arrives three ways: inline between `<think>` and `</think>` in the content
(Qwen3, DeepSeek-R1 through plain templates); after a `<think>` that the chat template
itself wrote into the prompt, so the stream holds only `thoughts…</think>answer`; or in
a separate `reasoning_content` / `reasoning` field (llama.cpp's and vLLM's reasoning
parsers, Ollama). Whichever way, it is never shown inline, never stored in history and
never counted against the context: the client separates it, and the outbox shows it
folded away.

A lone `</think>` cannot be told from an answer until it comes. So the model client
learns per model whether its template opens the block (`ReasoningSplitter(opened=True)`
from then on), and while it does not know yet it holds back only the first few
characters of visible text; if a lone `</think>` still comes after that, the splitter
says that what was shown must be taken back (`retracted`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

OPEN, CLOSE = "<think>", "</think>"
# Visible characters held back while it is unknown whether the template opens the block.
HOLD_CHARS = 48


def split_reasoning(text: str) -> tuple[str, str]:
    """(answer, reasoning) of a whole text.

    A lone `</think>` with no opening tag means the chat template opened the block itself,
    so everything before it is reasoning.
    """
    splitter = ReasoningSplitter()
    answer = splitter.feed(text) + splitter.flush()
    reasoning = splitter.reasoning
    return answer.strip() if reasoning else answer, reasoning


class ReasoningSplitter:
    """Separates reasoning from streamed content, tags split across pieces included.

    `opened`: the chat template is known to open the block, so the stream starts inside it.
    `hold`: visible characters to keep back while a lone `</think>` may still come.
    """

    def __init__(self, *, opened: bool = False, hold: int = 0) -> None:
        self._thinking = opened
        self._assumed_open = opened
        self._hold = hold
        self._held = ""  # visible text kept back (see `hold`)
        self._emitted = ""  # visible text given out before any tag: taken back on a lone close
        self._tagged = False  # a tag was seen: no lone `</think>` can come any more
        self._pending = ""  # a tail that may be the start of a tag
        self._reasoning: list[str] = []
        self._unconfirmed: list[str] = []  # text inside an assumed block not yet closed
        self.lone_close = False  # a `</think>` came without `<think>`: the template opened it
        self.retracted = False  # visible text already given out turned out to be reasoning

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning).strip()

    @property
    def template_opens(self) -> bool:
        """What this stream taught about the model's template (for the next stream)."""
        return self.lone_close or (self._assumed_open and self._tagged)

    def add_reasoning(self, text: str) -> None:
        """Reasoning that came in its own field.

        A server that parses reasoning out of the content (llama.cpp's and vLLM's reasoning
        parsers, Ollama) leaves no lone `</think>` in it: nothing more is held back.
        """
        self._reasoning.append(text)
        if not self._thinking:
            self._tagged = True

    def feed(self, piece: str) -> str:
        """The visible part of this piece (possibly empty while a tag is incomplete)."""
        text, self._pending = self._pending + piece, ""
        visible: list[str] = []
        while text:
            if self._thinking:
                inside = self._reasoning if self._tagged else self._unconfirmed
                at = text.find(CLOSE)
                if at < 0:
                    keep = _partial_tag_tail(text, CLOSE)
                    inside.append(text[: len(text) - keep])
                    self._pending = text[len(text) - keep :]
                    break
                inside.append(text[:at])
                self._reasoning += self._unconfirmed
                self._unconfirmed = []
                self._thinking, self._tagged = False, True
                text = text[at + len(CLOSE) :]
                continue
            at_open = text.find(OPEN)
            at_close = -1 if self._tagged else text.find(CLOSE)
            if at_close >= 0 and (at_open < 0 or at_close < at_open):
                self._lone_close(visible, text[:at_close])
                visible = []
                text = text[at_close + len(CLOSE) :]
                continue
            if at_open >= 0:
                visible.append(text[:at_open])
                self._thinking, self._tagged = True, True
                text = text[at_open + len(OPEN) :]
                continue
            keep = _partial_tag_tail(text, OPEN)
            if not self._tagged:
                keep = max(keep, _partial_tag_tail(text, CLOSE))
            visible.append(text[: len(text) - keep])
            self._pending = text[len(text) - keep :]
            break
        return self._release("".join(visible))

    def _lone_close(self, visible: list[str], before: str) -> None:
        """Everything before a lone `</think>` was reasoning, what was given out included."""
        self._reasoning.append(self._emitted + self._held + "".join(visible) + before)
        self.retracted = self.retracted or bool(self._emitted)
        self._emitted = self._held = ""
        self._tagged = self.lone_close = True

    def _release(self, out: str) -> str:
        """Visible text to give out now, minding the hold-back."""
        if self._tagged:
            out, self._held = self._held + out, ""
            return out
        if self._hold and not self._emitted:  # only the first characters are held back
            self._held += out
            if len(self._held) < self._hold:
                return ""
            out, self._held = self._held, ""
        self._emitted += out
        return out

    def flush(self) -> str:
        """The end of the stream: held-back text that never became a tag is text after all.

        A stream that started inside an assumed block and never closed it was not reasoning:
        this model did not open the block this time, so its text is the answer.
        """
        tail, self._pending = self._pending, ""
        if self._thinking and not self._tagged:
            text, self._unconfirmed = "".join(self._unconfirmed) + tail, []
            self._thinking = False
            return text
        if self._thinking:
            self._reasoning.append(tail)
            return ""
        out, self._held = self._held + tail, ""
        return out


def _partial_tag_tail(text: str, tag: str) -> int:
    """Length of the longest end of `text` that is a proper start of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class VisibleStream:
    """What of a streamed reply is shown, piece by piece: the reasoning split off (see
    `ReasoningSplitter`), no blank lines where it was, and `on_retract` awaited when text
    already shown turns out to have been reasoning (a template that opens the block).

    `opens`: what earlier streams taught about the model's template (None: not known yet).
    """

    def __init__(
        self, opens: bool | None, on_retract: Callable[[], Awaitable[None]] | None
    ) -> None:
        self.splitter = ReasoningSplitter(
            opened=opens is True, hold=HOLD_CHARS if opens is None else 0
        )
        self._on_retract = on_retract
        self._shown = False

    async def piece(self, content: str, thought: str) -> str:
        """The text to show for one streamed piece (possibly empty)."""
        if thought:
            self.splitter.add_reasoning(thought)
        visible = self.splitter.feed(content) if content else ""
        if self.splitter.retracted:
            self.splitter.retracted, self._shown = False, False
            if self._on_retract is not None:
                await self._on_retract()
        return self._show(visible)

    def tail(self) -> str:
        """Text held back as a possible tag start, at the end of the stream."""
        return self._show(self.splitter.flush())

    def _show(self, visible: str) -> str:
        if not self._shown:
            visible = visible.lstrip()
        self._shown = self._shown or bool(visible)
        return visible
