"""Quantized checkpoints with llm-compressor (run: quantize() and its steps in methods, inputs, calibration,
recipe, output, sizes, report) and their perplexity (perplexity)."""
