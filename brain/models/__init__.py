"""Model servers: the one client every call goes through, its transport, dialects, tokens, usage."""
