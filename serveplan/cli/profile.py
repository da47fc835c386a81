"""`profile -o FILE`: measure this machine's GPU into a hardware profile (extra `profile`: torch + CUDA).

`--trace torch DIR` records a PyTorch profiler trace of the measured kernels; `--trace nsys DIR` re-runs the
profile under Nsight Systems (serveplan.hwprofile.trace)."""

from __future__ import annotations

import os
import shlex
import sys

from serveplan.cli.args import _Parser
from serveplan.errors import ConfigError
from serveplan.hwprofile.profile import DTYPES, run_profile, summary
from serveplan.hwprofile.trace import TRACE_KINDS, UNDER_NSYS_ENV, run_under_nsys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _Parser(prog="profile",
                                 description="Measure a hardware profile of this machine's GPU(s).")
    ap.add_argument("--gpu", help="catalog name of the GPU (default: from the device name)")
    ap.add_argument("-o", "--output", required=True, help="where to write the profile YAML")
    ap.add_argument("--quick", action="store_true", help="a tiny subset (seconds)")
    ap.add_argument("--dtypes", help=f"comma-separated GEMM dtypes (default: {','.join(DTYPES)})")
    ap.add_argument("--n-gpus", type=int, help="GPUs for the collectives (default: all visible)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--trace", nargs=2, metavar=("KIND", "DIR"),
                    help="also trace the measured kernels into DIR: 'torch' (torch.profiler Chrome traces + "
                         "key_averages tables, one per section) or 'nsys' (re-run under Nsight Systems' nsys, "
                         "an NVTX range per measurement; needs nsys on PATH). Traced timings carry the tool's "
                         "overhead: the profile's provenance says so")
    args = ap.parse_args(argv)
    trace, trace_dir = args.trace or (None, None)
    if trace is not None and trace not in TRACE_KINDS:
        raise ConfigError(f"unknown --trace kind '{trace}'; known: {', '.join(TRACE_KINDS)} (see profile --help).")
    if trace == "nsys" and not os.environ.get(UNDER_NSYS_ENV):
        return run_under_nsys(trace_dir, argv)
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip()) if args.dtypes else None
    doc = run_profile(args.output, gpu_name=args.gpu, quick=args.quick, dtypes=dtypes, n_gpus=args.n_gpus,
                      progress=not args.no_progress, command=shlex.join(["profile", *argv]),
                      trace=trace, trace_dir=trace_dir)
    print(summary(doc))
    print(f"wrote {args.output}")
    if trace == "torch":
        print(f"torch traces: {trace_dir} (one <section>.json Chrome trace for https://ui.perfetto.dev and one "
              "<section>.txt key_averages table per section)")
    return 0


if __name__ == "__main__":
    from serveplan.cli import profile_main

    sys.exit(profile_main())
