"""GPU microbenchmarks -> hardware profiles (torch, imported lazily)."""
