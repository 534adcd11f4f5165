"""One owner per channel: every event of a channel applied in the order it arrived.

`events` names what can happen to a channel (a message, a button answer, an edit, a
deletion); `registry.Channels` stamps each with its place in its channel's order the
moment the platform reports it, and hands it to that channel's `owner.ChannelOwner`;
`questions` holds what a channel is waiting for an answer to (an open route question or
image proposal); `turn.after_turn` lets an answer hand on work that must not hold the
channel (an image rendering).
"""
