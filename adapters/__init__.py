"""Platform adapters: the only code that talks to Discord, Matrix or the terminal."""
