"""mombot's platform-free core: message model, model client, history, the brain."""
