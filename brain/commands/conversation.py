"""The commands that change how a conversation goes: answer the last message again
(/retry), open the scene with a card's greeting (/greeting), the channel's reply length and
members' temperature (/settings), and who you are to the bot everywhere (/persona).
Registered like the built-ins."""

from __future__ import annotations

from brain.chat.pipeline import ChatPipeline
from brain.commands.registry import Arg, CommandHandler, CommandRegistry, CommandSpec
from brain.errors import BadCommand
from brain.history.personas import MAX_PERSONA_CHARS, Personas
from brain.messages import CommandCall, Inbound
from brain.outbox import Outbox


class ConversationCommands:
    """Handlers of /retry, /greeting, /settings and /persona."""

    def __init__(self, registry: CommandRegistry, chat: ChatPipeline, personas: Personas) -> None:
        self.registry = registry
        self.chat = chat
        self.personas = personas

    def register(self) -> None:
        for spec, handler in self._table():
            self.registry.register(spec, handler)

    def _table(self) -> list[tuple[CommandSpec, CommandHandler]]:
        return [
            (
                CommandSpec("retry", "Answer the last message here again (a new reply)."),
                self.retry,
            ),
            (
                CommandSpec(
                    "greeting",
                    "List the character's greetings, or open the scene again with greeting N.",
                    (Arg("number", "Which greeting (1 is the first).", text=True),),
                ),
                self.greeting,
            ),
            (
                CommandSpec(
                    "settings",
                    "Show or change this channel's reply length and the members' temperature.",
                    (
                        Arg("length", "The reply's length in tokens (16–32768).", type=int),
                        Arg("temperature", "How freely the members answer (0–2).", type=float),
                        Arg("default", "Say `default` for config.toml's values again.", text=True),
                    ),
                    admin=True,  # it changes how the bot answers everyone in the channel
                ),
                self.settings,
            ),
            (
                CommandSpec(
                    "persona",
                    "Show who you are to me, set it (/persona TEXT), or remove it (clear).",
                    (Arg("text", "Who you are: a name, looks, what matters.", text=True),),
                ),
                self.persona,
            ),
        ]

    async def greeting(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        greeter, chosen = self.chat.greeter, (call.args.get("number") or "").strip()
        if not chosen:
            await outbox.send(greeter.listing())
            return
        if not chosen.isdigit():
            raise BadCommand(f"`/greeting {chosen[:20]}`: give the greeting's number, e.g. 2.")
        await greeter.greet_again(message.channel_key, int(chosen), message.author_name, outbox)

    async def retry(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        await self.chat.answer_again(message, outbox)

    async def settings(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """/settings [--length N] [--temperature X] [default]: changed ones are checked
        together (`brain.chat.tuning`), then all are shown."""
        tuning, channel = self.chat.mixture.tuning, message.channel_key
        reset = (call.args.get("default") or "").strip().lower()
        if reset and reset != "default":
            raise BadCommand(f"`{reset[:40]}` is not a setting; `default` resets them.")
        if reset:
            tuning.reset(channel)
        given = {name: call.args.get(name) for name in ("length", "temperature")}
        changes = {name: value for name, value in given.items() if value is not None}
        settings = tuning.change(channel, **changes) if changes else tuning.get(channel)
        mixture = self.chat.mixture
        length = settings.length or mixture.synthesizer.max_tokens
        temperatures = {c.temperature for c in mixture.members}
        own = "/".join(f"{t:g}" for t in sorted(temperatures))
        temperature = own if settings.temperature is None else f"{settings.temperature:g}"
        await outbox.send(
            f"Settings here: replies up to {length} tokens"
            f"{'' if settings.length else ' (config.toml)'}; members' temperature "
            f"{temperature}{'' if settings.temperature is not None else ' (config.toml)'}."
        )

    async def persona(self, call: CommandCall, message: Inbound, outbox: Outbox) -> None:
        """Yours on this platform, in every channel: read into each prompt after your
        message, and into `/sd me`."""
        text, user = " ".join((call.args.get("text") or "").split()), message.user_key
        if not text:
            known = await self.personas.get(user)
            await outbox.send(
                f"Your persona: {known}"
                if known
                else "You have no persona yet: `/persona <who you are>` sets one."
            )
            return
        if text.lower() == "clear":
            await self.personas.clear(user)
            await outbox.send("Your persona is removed.")
            return
        if len(text) > MAX_PERSONA_CHARS:
            raise BadCommand(
                f"A persona holds {MAX_PERSONA_CHARS} characters; yours has {len(text)}."
            )
        await self.personas.set(user, text)
        await outbox.send(f"Noted: in every channel here I'll know you as {text}")
