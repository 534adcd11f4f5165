"""Image generators behind the brain's `ImageGenerator` interface: local diffusers, remote A1111."""
