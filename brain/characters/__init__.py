"""Running one character: its prompt fitted to its window (context.py; recalled turns in
it, recall.py) and its call, streamed or whole (runner.py)."""
