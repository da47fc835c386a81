"""Test doubles shipped with the package: the fake OpenAI-compatible engine."""
