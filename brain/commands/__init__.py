"""Commands: the registry and parser, and the built-in commands."""
