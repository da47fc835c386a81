"""Run `vllm bench serve` over a grid of operating points against a running server; one JSON line per run.

    python benchmarks/gpu/vllm_grid.py --port 8000 --model /tmp/m8b --label bf16 --out $OUT/grid.jsonl

Shapes: prefill-heavy (2048 in / 128 out), balanced (512/512), decode-heavy (128/512), long (8192 / 256);
concurrency 1, 16, 64, 256 in the order given; every point but concurrency 1 is run --repeats times (the spread
is part of the result). --meta '{"model": ..., "gpu": ..., "tp": ...}' is copied into every row, so a row
says which configuration it measured (benchmarks/accuracy.py reads it; rows without it are the session-2
H100 8B grid). Random-token
prompts of exactly the given length (--random-range-ratio 0), --ignore-eos so outputs have exactly the given
length, --request-rate inf with --max-concurrency (closed loop), prefix caching off on the server.
"""

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {"prefill": (2048, 128), "balanced": (512, 512), "decode": (128, 512), "long": (8192, 256)}
CONCURRENCY = (1, 16, 64, 256)


def bench_argv(args, i, o, c, n, rep, tmpdir, fname):
    return ["--backend", "vllm",
           "--base-url", f"http://127.0.0.1:{args.port}", "--model", args.served, "--tokenizer", args.model, "--dataset-name", "random",
           "--random-input-len", str(i), "--random-output-len", str(o), "--random-range-ratio", "0",
           "--ignore-eos", "--max-concurrency", str(c), "--num-prompts", str(n), "--request-rate", "inf",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "50,90,99",
           "--save-result", "--result-dir", tmpdir, "--result-filename", fname, "--seed", str(rep),
           *(["--save-detailed"] if args.ttfts else [])]


def run_point(args, shape, i, o, c, rep, tmpdir):
    if shape == "long":  # one wave: a second one of 8k prompts costs minutes on a 70B and shows nothing new
        n = 2 if c == 1 else c
    else:
        n = 3 if c == 1 else c if c >= 64 else 2 * c
    fname = f"r_{shape}_{c}_{rep}.json"
    argv = bench_argv(args, i, o, c, n, rep, tmpdir, fname)
    t0 = time.time()
    if args.in_process:  # vLLM's own `bench serve` code, imported once (each CLI start costs ~20 s)
        try:
            from vllm.benchmarks import serve as vbs
            from vllm.utils.argparse_utils import FlexibleArgumentParser
            parser = FlexibleArgumentParser()
            vbs.add_cli_args(parser)
            vbs.main(parser.parse_args(argv))
        except Exception as e:  # noqa: BLE001
            return {"error": f"in-process bench failed: {type(e).__name__}: {e}"}
    else:
        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "bench", "serve", *argv]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            return {"error": p.stderr[-2000:], "cmd": cmd}
    with open(os.path.join(tmpdir, fname)) as f:
        doc = json.load(f)
    keep = {k: v for k, v in doc.items() if not isinstance(v, list)}
    if args.ttfts:  # each request's TTFT, s (a first wave's groups: which step gave each prompt its first token)
        keep["ttfts"] = doc.get("ttfts")
    keep.update(label=args.label, shape=shape, input_len=i, output_len=o, concurrency=c, repeat=rep,
                num_prompts=n, wall_s=round(time.time() - t0, 2))
    return keep


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--model", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmpdir", default="/tmp/vgrid")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--repeats", type=int, default=2, help="runs per point above concurrency 1")
    ap.add_argument("--long-concurrency", default="1,16", help="concurrencies for the long shape")
    ap.add_argument("--meta", type=json.loads, default={}, help="JSON object copied into every row")
    ap.add_argument("--in-process", action="store_true", help="call vLLM's bench code in this process")
    ap.add_argument("--ttfts", action="store_true", help="keep each request's TTFT in the row (--save-detailed)")
    a = ap.parse_args()
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/v1/models") as r:
        a.served = json.load(r)["data"][0]["id"]
    os.makedirs(a.tmpdir, exist_ok=True)
    for shape in a.shapes.split(","):
        i, o = SHAPES[shape]
        for c in map(int, (a.long_concurrency if shape == "long" else a.concurrency).split(",")):
            for rep in range(a.repeats) if c > 1 else (0,):
                row = run_point(a, shape, i, o, c, rep, a.tmpdir)
                row.update(a.meta)  # the configuration measured, over any key of vLLM's own of that name
                for k, v in {"label": a.label, "shape": shape, "concurrency": c}.items():  # error rows lack them
                    row.setdefault(k, v)
                with open(a.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(a.label, shape, c, rep, {k: row.get(k) for k in ("mean_ttft_ms", "mean_tpot_ms",
                      "output_throughput", "error")}, flush=True)


if __name__ == "__main__":
    main()
