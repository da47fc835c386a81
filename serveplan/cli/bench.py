"""`bench`: load-test one or more OpenAI-compatible endpoints with a traffic preset, or summarise a vLLM result.

    bench --url http://localhost:8000 --traffic chat rate_rps=3 --num-requests 200 -o bench.json
    bench --url http://h:8000 --url http://h:8001 --traffic rag --concurrency 16      # a plan's replicas
    bench --url http://localhost:8000 --traffic chat --sweep-rates 1,2,4 --report report.html
    bench --vllm-json result.json --slo interactive                                    # no requests sent
    bench --url http://localhost:8000 --traffic chat --export-locust loadtest/             # locustfile.py + k6.js

Arguments of the form key=value are overrides of the traffic (`rate_rps=3` or `traffic.rate_rps=3`).
Several --url are the replicas of one deployment: requests go round-robin, and the tables show the total
and each replica. --rate R runs open loop at R requests/s (a --concurrency given too caps requests in
flight); --concurrency N alone runs N closed-loop clients; neither runs at the traffic's own load.
--output writes the whole result as JSON (a sweep: {"sweep": "rate"|"concurrency", "points": [...]}),
--report a self-contained HTML report. Ctrl-C / SIGTERM stops the run, still writes what was measured,
and exits 130. --export-locust DIR sends nothing: it writes DIR/locustfile.py and DIR/k6.js, which replay the
same load (lengths drawn by bench's sampler with --seed, the same arrival process) with Locust or k6, and
prints the commands that run them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from serveplan.errors import EXIT_LAUNCH_FAILED, ConfigError

EXIT_INTERRUPTED = 130


def _parser():  # noqa: ANN202
    from serveplan.cli.args import _Parser, positive_float, positive_int, seconds_or_zero

    p = _Parser(prog="bench", description="Load-test OpenAI-compatible endpoint(s) with a traffic preset and "
                "report TTFT, TPOT, ITL, E2E and throughput. Extra key=value arguments override the traffic, "
                "e.g. rate_rps=3 or traffic.output_len.mean=128. A keyed endpoint (vLLM --api-key, a LiteLLM "
                "proxy) gets $OPENAI_API_KEY as a Bearer token.")
    p.add_argument("--url", action="append", default=[], metavar="URL",
                   help="server base URL (http://host:8000, …/v1 or a full …/completions URL); repeat for "
                        "the replicas of one deployment")
    p.add_argument("--traffic", default="chat", help="traffic preset (chat, rag, summarize, codegen, "
                   "long-generation, offline-batch) or a YAML file (default chat)")
    p.add_argument("--slo", help="SLO preset (default, interactive, relaxed, none) or a YAML file: adds "
                   "goodput and per-target pass/fail")
    p.add_argument("--rate", type=positive_float, help="open loop at this many requests/s")
    p.add_argument("--concurrency", type=positive_int, help="closed loop with this many clients (with --rate: a cap on "
                   "requests in flight)")
    p.add_argument("--num-requests", type=positive_int, help="stop after this many requests (default 200 when "
                   "--duration is not given)")
    p.add_argument("--duration", type=positive_float, help="stop sending after this many seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled lengths and arrivals")
    p.add_argument("--warmup", type=seconds_or_zero, default=0.0, metavar="SECONDS", help="first send the same load "
                   "for this many seconds and leave it out of the figures (a fresh engine compiles kernels for new "
                   "batch shapes under its first load; default 0: none)")
    p.add_argument("--timeout", type=positive_float, default=600.0, help="per-request timeout in seconds")
    p.add_argument("--model", help="model name for requests (default: the server's first /v1/models entry)")
    p.add_argument("--tokenizer", help="local tokenizer (HF id or path) for exact prompt lengths")
    p.add_argument("--endpoint", choices=("completions", "chat"), default="completions",
                   help="/v1/completions (default) or /v1/chat/completions")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--sweep-rates", metavar="R1,R2,...", help="run one point per rate (open loop)")
    g.add_argument("--sweep-concurrency", metavar="C1,C2,...", help="run one point per concurrency (closed loop)")
    p.add_argument("-o", "--output", help="write the result as JSON here")
    p.add_argument("--report", help="write a self-contained HTML report here")
    p.add_argument("--export-locust", metavar="DIR", help="write DIR/locustfile.py and DIR/k6.js replaying this "
                   "load (Locust / k6) instead of running it; the run lasts --duration (default 60 s)")
    p.add_argument("--vllm-json", metavar="FILE", help="summarise a `vllm bench serve --save-result` file "
                   "instead of running")
    return p


def _numbers(text: str, flag: str, cast):  # noqa: ANN001, ANN202
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        vals = [cast(t) for t in items]
    except ValueError:
        kind = "integers" if cast is int else "numbers"
        raise ConfigError(f"{flag} takes comma-separated {kind}, e.g. {flag} 1,2,4; got '{text}'.") from None
    if not vals:
        raise ConfigError(f"{flag} needs at least one value, e.g. {flag} 1,2,4.")
    if any(v <= 0 for v in vals):
        raise ConfigError(f"{flag} values must be positive; got '{text}'.")
    return vals


def load_slo(name_or_file: str):  # noqa: ANN201
    """An SLO preset from conf/slo, or a YAML file of SLO fields."""
    from pydantic import ValidationError

    from serveplan.errors import validation_sentence
    from serveplan.planner.config import build_request
    from serveplan.planner.spec import SLO

    p = Path(name_or_file)
    if name_or_file.endswith((".yaml", ".yml")) or p.is_file():
        if not p.is_file():
            raise ConfigError(f"SLO file '{p}' does not exist; give a preset (default, interactive, relaxed, "
                              f"none) or a YAML file.")
        from serveplan.fileio import read_document

        try:
            return SLO.model_validate(read_document(p, "SLO file"))
        except ValidationError as e:
            raise ConfigError(validation_sentence(e, "slo")) from None
    return build_request(overrides=[f"slo={name_or_file}"]).slo


def _check_args(a) -> None:  # noqa: ANN001
    if a.vllm_json and a.export_locust:
        raise ConfigError("--vllm-json summarises an existing result and --export-locust writes a load test; "
                          "give one of them.")
    if a.vllm_json:
        extra = [f for f, v in (("--url", a.url), ("--sweep-rates", a.sweep_rates),
                                ("--sweep-concurrency", a.sweep_concurrency), ("--report", a.report)) if v]
        if extra:
            raise ConfigError(f"--vllm-json summarises an existing result, so it takes no {', '.join(extra)}.")
        return
    if not a.url:
        raise ConfigError("bench needs --url (the server, e.g. --url http://localhost:8000) or --vllm-json FILE.")
    for u in a.url:
        if not u.startswith(("http://", "https://")):
            raise ConfigError(f"--url {u}: write the scheme too, e.g. http://{u}.")
    if a.export_locust:
        extra = [f for f, v in (("--sweep-rates", a.sweep_rates), ("--sweep-concurrency", a.sweep_concurrency),
                                ("--report", a.report), ("-o", a.output), ("--tokenizer", a.tokenizer),
                                ("--slo", a.slo), ("--num-requests", a.num_requests)) if v]
        if extra:
            raise ConfigError(f"--export-locust writes a load test for one load point and runs nothing, so it "
                              f"takes no {', '.join(extra)} (the run lasts --duration seconds).")
        if len(set(a.url)) > 1:
            raise ConfigError("--export-locust takes one --url (Locust's --host and k6's BASE_URL are one "
                              "server); export once per replica, or give the address of a load balancer.")
    if a.sweep_rates and a.rate is not None:
        raise ConfigError("--sweep-rates sets the rate of each point; drop --rate.")
    if a.sweep_concurrency and (a.rate is not None or a.concurrency is not None):
        raise ConfigError("--sweep-concurrency sets the concurrency of each point (closed loop); drop "
                          "--rate / --concurrency.")


def main(argv: list[str]) -> int:
    from serveplan.cli.args import split_overrides
    from serveplan.cli.boundary import _console

    flags, overrides = split_overrides(argv)
    a = _parser().parse_args(flags)
    _check_args(a)
    slo = load_slo(a.slo) if a.slo else None
    con = _console()
    if a.vllm_json:
        return _vllm_json(a, slo, con)
    if a.export_locust:
        return _export(a, overrides, con)

    from serveplan.bench.loadgen import run_bench, sweep
    from serveplan.bench.tables import render_sweep_table, render_table
    from serveplan.planner.config import load_traffic

    traffic = load_traffic(a.traffic, overrides)
    rates = _numbers(a.sweep_rates, "--sweep-rates", float) if a.sweep_rates else None
    concs = _numbers(a.sweep_concurrency, "--sweep-concurrency", int) if a.sweep_concurrency else None
    for flag, path in (("-o", a.output), ("--report", a.report)):
        if path:
            check_writable(flag, Path(path))
    check_reachable(a.url)
    kw = dict(model=a.model, num_requests=a.num_requests, duration_s=a.duration, seed=a.seed, slo=slo,
              timeout_s=a.timeout, tokenizer=a.tokenizer, endpoint=a.endpoint, progress=not a.no_progress,
              warmup_s=a.warmup)
    if a.sweep_rates or a.sweep_concurrency:
        if a.sweep_rates:
            results = sweep(a.url, traffic, rates=rates, concurrency=a.concurrency, **kw)
        else:
            results = sweep(a.url, traffic, concurrencies=concs, **kw)
        for r in results:
            render_table(r, con)
        render_sweep_table(results, con)
        if a.output:
            from serveplan.fileio import write_atomic

            doc = {"sweep": "rate" if a.sweep_rates else "concurrency",
                   "points": [r.model_dump(mode="json") for r in results]}
            write_atomic(Path(a.output), json.dumps(doc, indent=1))
            con.print(f"wrote {a.output} ({len(results)} point(s))", markup=False)
    else:
        res = run_bench(a.url, traffic, rate_rps=a.rate, concurrency=a.concurrency, **kw,
                        output=a.output)
        results = [res]
        render_table(res, con)
        if a.output:
            con.print(f"wrote {a.output}", markup=False)
    if a.report:
        from serveplan.bench.report import NO_MATPLOTLIB, plots_available, write_report

        write_report(results, a.report)
        if not plots_available():
            from rich.markup import escape

            con.print(f"[yellow]note:[/] {escape(NO_MATPLOTLIB)}")
        con.print(f"wrote {a.report}", markup=False)
    if any(r.interrupted for r in results):
        print("interrupted: the figures cover the requests that finished before the stop.", file=sys.stderr)
        return EXIT_INTERRUPTED
    dead = [r for r in results if r.summary.completed == 0]
    if dead:
        errors = sorted({k for r in dead for k in r.summary.errors})
        print(f"error: no request succeeded{' at ' + ', '.join(r.load_label for r in dead) if len(results) > 1 else ''}"
              f"{' (' + ', '.join(errors) + ')' if errors else ''}; the figures above are not a measurement.",
              file=sys.stderr)
        return EXIT_LAUNCH_FAILED
    return 0


def _export(a, overrides: list[str], con) -> int:  # noqa: ANN001
    from serveplan.bench.export import export_files, export_profile
    from serveplan.fileio import write_atomic
    from serveplan.planner.config import load_traffic

    out = Path(a.export_locust)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--export-locust {out} is a file; give a folder (it gets locustfile.py and k6.js).")
    traffic = load_traffic(a.traffic, overrides)
    profile = export_profile(traffic, a.url[0], model=a.model, rate_rps=a.rate, concurrency=a.concurrency,
                             duration_s=a.duration, seed=a.seed, timeout_s=a.timeout, endpoint=a.endpoint)
    files = export_files(profile)
    try:
        for name, text in files.items():  # each file replaced whole; other files in the folder are left alone
            write_atomic(out / name, text)
    except OSError as e:
        raise ConfigError(f"--export-locust {out}: cannot write there ({e.strerror or e}); choose a folder you "
                          f"can write to.") from None
    con.print(f"wrote {out / 'locustfile.py'} and {out / 'k6.js'}", markup=False)
    con.print(f"  {profile.locust_command(str(out / 'locustfile.py'))}", markup=False, soft_wrap=True)
    con.print(f"  k6 run {out / 'k6.js'}", markup=False, soft_wrap=True)
    return 0


def check_writable(flag: str, path: Path) -> None:
    """Results are never lost at the end of a run: the output paths are checked before it starts."""
    import os

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file name.")
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: the folder {parent} does not exist.")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {path}: cannot write there; choose a path you can write to.")


def check_reachable(urls: list[str], timeout_s: float = 5.0) -> None:
    """Fail in seconds, not after the whole schedule, when an endpoint does not answer at all."""
    import httpx

    from serveplan.errors import LaunchError

    from serveplan.bench.loadgen import auth_headers

    headers = auth_headers()
    for u in dict.fromkeys(urls):
        base = u.rstrip("/").removesuffix("/v1")
        try:
            r = httpx.get(base + "/v1/models", timeout=timeout_s, headers=headers)
        except httpx.HTTPError as e:
            raise LaunchError(f"Cannot reach {u} ({type(e).__name__}): is the server running and listening "
                              f"there? (plan launch DIR --detach starts one.)") from None
        if r.status_code in (401, 403):
            how = ("the key in OPENAI_API_KEY was refused" if headers else
                   "set OPENAI_API_KEY to its key (bench sends it as a Bearer token)")
            raise LaunchError(f"{u} answered {r.status_code} ({'Unauthorized' if r.status_code == 401 else 'Forbidden'}"
                              f"): it wants an API key; {how}.")


def _vllm_json(a, slo, con) -> int:  # noqa: ANN001
    from rich.table import Table

    from serveplan.fileio import write_atomic
    from serveplan.bench.results import slo_checks
    from serveplan.bench.tables import fmt_num, latency_table
    from serveplan.bench.report import load_vllm_bench_json

    s = load_vllm_bench_json(a.vllm_json)
    if slo is not None:
        s.slo_met = slo_checks(s, slo)
    con.print(latency_table(s, f"vllm bench serve result {a.vllm_json}"))
    t2 = Table(show_header=False, box=None)
    t2.add_column(style="bold")
    t2.add_column(justify="right")
    t2.add_row("requests ok / failed", f"{s.completed} / {s.failed}")
    t2.add_row("duration", f"{s.duration_s:.1f} s")
    t2.add_row("requests/s", fmt_num(s.requests_per_s, 2))
    t2.add_row("output tok/s", fmt_num(s.output_tok_s))
    t2.add_row("input tok/s", fmt_num(s.input_tok_s))
    if s.goodput_rps is not None:
        t2.add_row("goodput req/s", fmt_num(s.goodput_rps, 2))
    if s.offered_rps is not None:
        t2.add_row("offered req/s", fmt_num(s.offered_rps, 2))
    if s.concurrency_limit is not None:
        t2.add_row("max concurrency", str(s.concurrency_limit))
    if s.errors:
        t2.add_row("errors", ", ".join(f"{k} {v}" for k, v in s.errors.items()))
    if s.slo_met:
        t2.add_row("SLO", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in s.slo_met.items()))
    con.print(t2)
    if a.output:
        write_atomic(Path(a.output), s.model_dump_json(indent=1))
        con.print(f"wrote {a.output}", markup=False)
    return 0
