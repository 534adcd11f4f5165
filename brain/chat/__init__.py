"""The chat: one message's pipeline, the character mixture, running a character, prompts, /think."""
