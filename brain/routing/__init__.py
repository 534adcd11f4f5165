"""Routing: text or image, and asking when unsure."""
