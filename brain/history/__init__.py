"""Per-channel history and the database under it."""
