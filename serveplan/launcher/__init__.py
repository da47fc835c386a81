"""Processes: start the planned engines on this machine, supervise them, stop them (run, launch, gpus)."""
