"""Processes: start the planned engines on this machine, supervise them, stop them (supervisor, procs,
logwatch, launch, record: run.json, gpus)."""
