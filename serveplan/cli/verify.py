"""`verify PLAN_DIR`: launch a plan, bench it at its planned load, compare measured with predicted."""

from __future__ import annotations

from serveplan.bench.verify import DEFAULT_WARMUP_S, render_verify, verify_plan
from serveplan.cli.args import _Parser, port, positive_float, positive_int, seconds_or_zero
from serveplan.cli.boundary import _console


def main(argv: list[str]) -> int:
    p = _Parser(prog="verify", description="Launch a plan, benchmark it at its planned load with its own traffic, "
                "stop it, and compare measured with predicted latencies and throughput (writes verify.json).")
    p.add_argument("plan_dir", help="folder holding plan.yaml (plan -o)")
    p.add_argument("--model", help="checkpoint path or HF id to serve (a quantized one for awq/gptq/int8)")
    p.add_argument("--tokenizer", help="tokenizer to build prompts with (default: the --model folder's own)")
    p.add_argument("--num-requests", type=positive_int, help="requests to send (default 200 unless --duration)")
    p.add_argument("--duration", type=positive_float, help="seconds to send for")
    p.add_argument("--rate", type=positive_float, help="bench open loop at this rate instead of the planned load "
                   "(the prediction is re-estimated for it)")
    p.add_argument("--concurrency", type=positive_int, help="bench closed loop with this many clients instead (with "
                   "--rate: a cap on requests in flight)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", type=seconds_or_zero, default=DEFAULT_WARMUP_S, metavar="SECONDS",
                   help=f"send the same load for this many seconds first, left out of the comparison (default "
                   f"{DEFAULT_WARMUP_S:g}; 0: none): a fresh engine compiles kernels for new batch shapes under its "
                   "first load, which the prediction, a running deployment's, does not include")
    p.add_argument("--timeout", type=positive_float, default=600.0, help="per-request timeout in seconds")
    p.add_argument("--endpoint", choices=("completions", "chat"), default="completions")
    p.add_argument("--force", action="store_true", help="launch even if the visible GPUs do not match the plan")
    p.add_argument("--port", type=port, default=8000, help="first replica's port")
    p.add_argument("--health-timeout", type=positive_float, default=900.0, help="seconds to wait for /health")
    p.add_argument("-o", "--output", help="where to write verify.json (default: next to plan.yaml)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    con = _console()
    result = verify_plan(a.plan_dir, model=a.model, tokenizer=a.tokenizer, num_requests=a.num_requests, duration_s=a.duration,
                         force=a.force, base_port=a.port, health_timeout_s=a.health_timeout, output=a.output,
                         rate_rps=a.rate, concurrency=a.concurrency, seed=a.seed, timeout_s=a.timeout,
                         endpoint=a.endpoint, progress=not a.no_progress, console=con, warmup_s=a.warmup)
    render_verify(result, con)
    if result.interrupted:
        import sys

        print("interrupted: verify.json holds the requests that finished before the stop.", file=sys.stderr)
    elif result.all_failed:
        import sys

        kinds = ", ".join(f"{k} {v}" for k, v in result.errors.items())
        print(f"error: every request failed ({kinds}); see the engine logs in {result.plan_dir}/logs.",
              file=sys.stderr)
    return result.exit_code
