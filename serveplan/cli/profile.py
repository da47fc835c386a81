"""`profile -o FILE`: measure this machine's GPU into a hardware profile (extra `profile`: torch + CUDA)."""

from __future__ import annotations

import shlex
import sys

from serveplan.cli.args import _Parser
from serveplan.hwprofile.profile import DTYPES, run_profile, summary


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
    args = ap.parse_args(argv)
    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip()) if args.dtypes else None
    doc = run_profile(args.output, gpu_name=args.gpu, quick=args.quick, dtypes=dtypes, n_gpus=args.n_gpus,
                      progress=not args.no_progress, command=shlex.join(["profile", *argv]))
    print(summary(doc))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    from serveplan.cli import profile_main

    sys.exit(profile_main())
