"""Memory beyond the window: recall by embedding, the rolling summary, their tables."""
