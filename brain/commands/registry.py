"""Commands, defined once and platform-free.

A `CommandSpec` is the documentation, the validation and the parser: Discord
builds native slash commands from it, Matrix and the console parse text such as
`/think why is the sky blue --rounds 3` against it. Errors carry the usage line.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brain.errors import BadCommand
from brain.messages import CommandCall, Inbound

if TYPE_CHECKING:
    from brain.outbox import Outbox

CommandHandler = Callable[[CommandCall, Inbound, "Outbox"], Awaitable[None]]
"""Runs one checked command call for a message, answering through the outbox."""

PREFIXES = ("/", "!")


@dataclass(frozen=True)
class Arg:
    """One argument. The `text` argument of a command takes the free words of the line."""

    name: str
    help: str
    type: type = str
    required: bool = False
    default: Any = None
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] = ()
    text: bool = False  # the free-text argument (at most one per command)
    # Free text that is prose (a question): a `--word` in it that is not one of the command's
    # options is a word of the text ("what does rm --force do"), not an unknown option.
    prose: bool = False
    metavar: str = ""  # how usage lines show the value, e.g. WxH; default: its type

    @property
    def shown(self) -> str:
        return self.metavar or {int: "N", float: "X"}.get(self.type, "TEXT")

    def convert(self, raw: Any, command: CommandSpec) -> Any:
        """Parse (from text) or check (from a platform's typed option) one value."""
        kind = {int: "a whole number", float: "a number"}.get(self.type, "text")
        if isinstance(raw, str) and self.type is not str:
            try:
                value = self.type(raw)
            except ValueError:
                raise BadCommand(
                    f"`{self.name}` must be {kind}, not `{raw[:40]}`.\nUsage: {command.usage()}"
                ) from None
        elif isinstance(raw, self.type) and not isinstance(raw, bool):
            value = raw
        else:
            raise BadCommand(f"`{self.name}` must be {kind}.\nUsage: {command.usage()}")
        if self.choices and value not in self.choices:
            raise BadCommand(
                f"`{self.name}` must be one of {', '.join(self.choices)}.\nUsage: {command.usage()}"
            )
        if (self.min is not None and value < self.min) or (
            self.max is not None and value > self.max
        ):
            raise BadCommand(
                f"`{self.name}` must be between {_num(self.min)} and {_num(self.max)}, "
                f"not {str(raw)[:40]}.\nUsage: {command.usage()}"
            )
        return value


@dataclass(frozen=True)
class CommandSpec:
    """A command's name, help, arguments and who may run it."""

    name: str
    help: str
    args: tuple[Arg, ...] = ()
    admin: bool = False

    def usage(self) -> str:
        parts = [f"/{self.name}"]
        for arg in self.args:
            if arg.text:
                shown = "|".join(arg.choices) if arg.choices else arg.name
                parts.append(f"<{shown}>" if arg.required else f"[{shown}]")
            else:
                parts.append(f"[--{arg.name} {arg.shown}]")
        return " ".join(parts)


ADMIN_NOTE = " Admins only in shared channels (in a DM or the console you are one)."


@dataclass
class CommandRegistry:
    """The commands this bot knows and who runs each: one dispatch table.

    Built-in commands and extensions' commands register the same way, with a handler.
    """

    specs: dict[str, CommandSpec] = field(default_factory=dict)
    handlers: dict[str, CommandHandler] = field(default_factory=dict)

    def register(self, spec: CommandSpec, handler: CommandHandler) -> None:
        if spec.name in self.specs:
            raise ValueError(f"command /{spec.name} is registered twice")
        self.specs[spec.name] = spec
        self.handlers[spec.name] = handler

    async def run(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """Run a checked call: refused for non-admins where the command is for admins."""
        spec = self.specs.get(call.name)
        if spec is None:
            raise BadCommand(f"/{call.name[:40]} is not available here.")
        if spec.admin and not message.is_admin:
            raise BadCommand(f"Only admins can use /{call.name} here.")
        await self.handlers[call.name](call, message, outbox)

    def parse_text(self, text: str) -> CommandCall | None:
        """Parse `/name ...` or `!name ...`; None when the text is not a command at all."""
        split = _split_command(text)
        if split is None:
            return None
        prefix, name, rest = split
        spec = self.specs.get(name.lower())
        if spec is None:
            if prefix == "/" and name.isalpha():
                known = ", ".join(f"/{n}" for n in sorted(self.specs))
                raise BadCommand(f"I don't know the command /{name[:40]}. Commands: {known}")
            return None  # "!!!" or "/s" inside prose is just text
        return self.validate(spec, _parse_words(spec, rest))

    def kind_of(self, text: str, call: CommandCall | None = None) -> str:
        """What a message is, for metrics: a known command's name, "unknown command" or "chat"."""
        if call is not None:
            return call.name if call.name in self.specs else "unknown command"
        split = _split_command(text)
        if split is None:
            return "chat"
        prefix, name, _ = split
        if name.lower() in self.specs:
            return name.lower()
        # as in parse_text: only "/word" is an unknown command; anything else is prose
        return "unknown command" if prefix == "/" and name.isalpha() else "chat"

    def check(self, call: CommandCall) -> CommandCall:
        """Validate a call that a platform built from its native command options."""
        spec = self.specs.get(call.name)
        if spec is None:
            raise BadCommand(f"/{call.name[:40]} is not available here.")
        return self.validate(spec, {k: v for k, v in call.args.items() if v is not None})

    def validate(self, spec: CommandSpec, raw: dict[str, Any]) -> CommandCall:
        """Convert raw values (strings from text, typed from native options) into checked ones."""
        args: dict[str, Any] = {}
        known = {a.name for a in spec.args}
        for key in raw:
            if key not in known:
                raise BadCommand(f"/{spec.name} has no option `{key[:40]}`.\nUsage: {spec.usage()}")
        for arg in spec.args:
            value = raw.get(arg.name)
            if value is None or value == "":
                if arg.required:
                    raise BadCommand(f"/{spec.name} needs {arg.name}.\nUsage: {spec.usage()}")
                args[arg.name] = arg.default
            else:
                args[arg.name] = arg.convert(value, spec)
        return CommandCall(spec.name, args)

    def markdown_table(self) -> str:
        """The commands as the README shows them (tests/test_commands.py keeps them equal)."""
        rows = []
        for spec in self.specs.values():
            usage = spec.usage().replace("|", "\\|")  # Markdown would split the cell there
            rows.append(f"| `{usage}` | {spec.help}{ADMIN_NOTE if spec.admin else ''} |")
        return "\n".join(["| command | what it does |", "|---|---|", *rows])

    def help_text(self) -> str:
        lines = [f"`{spec.usage()}` — {spec.help}" for spec in self.specs.values()]
        return "Commands:\n" + "\n".join(lines)


def _split_command(text: str) -> tuple[str, str, str] | None:
    """(prefix, name, rest) of a text that starts like a command, else None."""
    stripped = text.strip()
    if len(stripped) < 2 or stripped[0] not in PREFIXES or stripped[1].isspace():
        return None
    name, *rest = stripped[1:].split(maxsplit=1)  # the rest keeps its newlines
    return stripped[0], name, rest[0] if rest else ""


def _parse_words(spec: CommandSpec, rest: str) -> dict[str, str]:
    """Split `free words --opt value --flag=value` into raw option strings.

    The free text keeps its own spacing, newlines included, where no option was cut out of it.
    """
    raw: dict[str, str] = {}
    text_arg = next((a for a in spec.args if a.text), None)
    options = {a.name for a in spec.args if not a.text}
    tokens = list(re.finditer(r"\S+", rest))
    kept: list[str] = []
    end = -1  # where the last word kept ends: the spacing after it is the text's own
    i = 0
    while i < len(tokens):
        token = tokens[i].group()
        key, eq, value = token[2:].partition("=")
        is_option = token.startswith("--") and len(token) > 2
        if is_option and text_arg is not None and text_arg.prose and key.lower() not in options:
            is_option = False  # a word of the question
        if is_option:
            if not eq:
                if i + 1 >= len(tokens):
                    raise BadCommand(f"`--{key[:40]}` needs a value.\nUsage: {spec.usage()}")
                i += 1
                value = tokens[i].group()
            raw[key.lower()] = value
            end = -1
        else:
            start = tokens[i].start()
            gap = rest[end:start] if end >= 0 else (" " if kept else "")
            kept.append(gap + token)
            end = tokens[i].end()
        i += 1
    if kept:
        if text_arg is None:
            raise BadCommand(f"/{spec.name} takes no text.\nUsage: {spec.usage()}")
        raw[text_arg.name] = "".join(kept)
    return raw


def _num(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else f"{value}"
