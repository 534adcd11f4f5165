"""Configuration, wiring and the `mombot` command line."""

__version__ = "0.1.0"
