"""Quantized checkpoints with llm-compressor (run) and their perplexity (perplexity)."""
