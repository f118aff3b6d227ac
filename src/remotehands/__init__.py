"""remotehands: hands on remote computers for people and AI agents."""

__version__ = "0.1.0"
