"""Launch proof: do the planner's top candidates start on a real GPU, at the memory the plan shows?

Three steps (docs/launch-safety.md has the commands and the table):

  python benchmarks/launch_safety.py plans benchmarks/gpu/launch_safety      # here: plan each question for the
        lent GPU kinds, write one plan folder per top-3 candidate and manifest.json (predicted weights, KV tokens)
  python benchmarks/gpu/launch_safety_run.py benchmarks/gpu/launch_safety    # on the GPU machine: `plan launch`
        each with dummy weights in a folder of the planned checkpoint format, read vLLM's log, `plan stop`
  python benchmarks/launch_safety.py report benchmarks/gpu/launch_safety/results.jsonl   # the table
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (name, model, GPUs per question, overrides). Sized to a lent machine of 1-2 GPUs (H100 80GB or H200).
# TP>1 plans render with hardware.nvlink_multicast=false: the lent machines have NVLink multicast off.
QUESTIONS = [
    ("70b-2gpu-chat", "llama-70b", 2, ["search.use_all_gpus=true", "hardware.nvlink_multicast=false"]),
    ("70b-1gpu-fp8", "llama-70b", 1, ["search.allowed_quant=[fp8]"]),
    ("8b-1gpu-chat", "llama-8b", 1, []),
    ("13b-1gpu-rag", "llama-2-13b", 1, ["traffic=rag"]),
    ("mixtral-2gpu-chat", "mixtral-8x7b", 2, ["search.use_all_gpus=true", "hardware.nvlink_multicast=false"]),
    ("8b-2gpu-summarize", "llama-8b", 2, ["traffic=summarize", "search.use_all_gpus=true",
                                          "hardware.nvlink_multicast=false"]),
]
# Held out: models whose shapes no memory term was taken from (other architectures, vocabularies, biases). Their
# KV cache is left to vLLM's profiling (not pinned) so that vLLM's own number tests the memory model.
HELD_OUT = [
    ("mistral-7b-1gpu-chat", "mistral-7b", 1, ["engine.pin_kv_cache=false"]),
    ("qwen2.5-32b-1gpu-rag", "qwen2.5-32b", 1, ["traffic=rag", "engine.pin_kv_cache=false"]),
]
QUESTIONS += HELD_OUT
GPUS = {"h100-sxm": "H100", "h200": "H200"}
GPU_MACHINE = ["engine.version=0.26.0"]  # the lent GPU machines' vLLM (the default, 0.33.0, is not installed there)
TOP = 3


def _dummy_format(ckpt: dict) -> str:
    """The quantization_config the dummy folder declares: the planned checkpoint's format, or for a bf16
    folder served with online quantization, none."""
    if ckpt["source"] in ("base", "online"):
        return "hf"
    if ckpt["source"] == "needs_quantize" or ckpt["format"] == "compressed-tensors":
        return f"ct-{ckpt['weight_dtype']}"
    return ckpt["format"] if ckpt["format"] != "modelopt" else "fp8"


def make_plans(out: Path) -> None:
    from serveplan.planner.api import plan
    from serveplan.planner.config import build_request
    from serveplan.render.targets import write_artifacts

    out = out.resolve()
    if out.exists():
        shutil.rmtree(out)
    manifest = []
    for gpu, short in GPUS.items():
        for name, model, n, ovs in QUESTIONS:
            p = plan(build_request(model=model, gpus=f"{n}x{short}", overrides=[*ovs, *GPU_MACHINE]))
            for k, est in enumerate(p.ranked[:TOP]):
                others = tuple(e for e in p.ranked if e is not est)
                one = p.model_copy(update={"ranked": (est,) + others})
                d = out / gpu / f"{name}-{k + 1}"
                write_artifacts(one, d)
                c, m = est.config, est.memory
                ck = c.checkpoint.model_dump()
                manifest.append({
                    "gpu": gpu, "question": name, "rank": k + 1, "dir": str(d.relative_to(ROOT)),
                    "model": p.request.model.name, "candidate": c.label(), "gpus": c.total_gpus,
                    "tp": c.tp, "pp": c.pp, "replicas": c.replicas, "weight_dtype": c.weight_dtype,
                    "checkpoint": ck, "dummy_format": _dummy_format(ck),
                    "predicted_weights_gib": m.weights_gb * 1e9 / 2**30,
                    "predicted_kv_tokens": m.kv_tokens, "predicted_kv_gib": m.kv_cache_gb * 1e9 / 2**30,
                    "max_model_len": c.max_model_len, "held_out": name in {q[0] for q in HELD_OUT},
                    "pinned_kv": "--kv-cache-memory-bytes" in (d / "launch.sh").read_text(),
                })
                print(f"{gpu:9s} {name:20s} #{k + 1} {c.label():60s} {ck['source']:14s} "
                      f"weights {m.weights_gb:5.1f} GB, KV {m.kv_tokens:>9,} tokens")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    print(f"wrote {len(manifest)} plan folders and {out / 'manifest.json'}")


def dummy_floor_kv_tokens(r: dict) -> int | None:
    """The KV tokens the plan gives a launch of dummy weights whose KV cache vLLM sizes itself: vLLM's activation
    peak under `--load-format dummy` has a floor of one vocab x hidden bf16 matrix (per TP rank) that loaded weights do
    not have (docs/launch-safety.md, session 24: 1.49 GiB dummy, 0.41 GiB loaded, same shape); where the plan's own
    activation term is below it, the difference comes out of the cache. None for a pinned cache."""
    from activation_peaks import budget_of, plan_and_dummy_floor  # benchmarks/, beside this script

    b = budget_of(r["candidate"])
    if r.get("pinned_kv") or b is None or not r.get("predicted_kv_tokens"):
        return None
    plan, floor = plan_and_dummy_floor(r["model"], r.get("tp", 1), *b, chunked="no-chunk" not in r["candidate"],
                                       max_model_len=r.get("max_model_len"))
    bytes_per_token = r["predicted_kv_gib"] * 2**30 / r["predicted_kv_tokens"]
    return r["predicted_kv_tokens"] - round(max(0.0, floor - plan) / bytes_per_token)


def report(results: Path) -> None:
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    print("| card | question | # | candidate | checkpoint (dummy folder) | healthy | weights GiB vLLM / plan | "
          "KV tokens vLLM / plan | plan vs vLLM | start s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = within = n_kv = n = 0
    for r in rows:
        if "question" not in r:
            continue
        n += 1
        kv, pkv, w = r.get("kv_tokens"), r["predicted_kv_tokens"], r.get("weights_gib")
        if kv:
            n_kv += 1
            within += abs(pkv - kv) / kv <= 0.03
        ok += bool(r.get("healthy"))
        card = "H100 budget*" if r.get("emulate_util") else ("H200" if r["gpu"] == "h200" else "H100")
        if r.get("held_out"):
            card += " (held out)"
        if r.get("pinned_kv"):
            card += ", pinned KV"
        health = "yes" if r.get("healthy") else "NO: " + (r.get("why") or "?")[:80]
        print(f"| {card} | {r['question']} | {r['rank']} | `{r['candidate']}` | {r['checkpoint']['source']} "
              f"({r['dummy_format']}) | {health} | {w if w is not None else '-'} / {r['predicted_weights_gib']:.2f} | "
              f"{f'{kv:,}' if kv else '-'} / {pkv:,} | {f'{(pkv - kv) / kv:+.1%}' if kv else '-'} | "
              f"{r.get('start_s', '-')} |")
    print(f"\nhealthy {ok}/{n}; KV tokens within 3% of vLLM's: {within}/{n_kv}")
    for r in rows:  # vLLM sized the cache: the plan again with the dummy-weights activation floor
        floor_kv = dummy_floor_kv_tokens(r) if "question" in r and r.get("kv_tokens") else None
        if floor_kv is not None and floor_kv != r["predicted_kv_tokens"]:
            kv = r["kv_tokens"]
            print(f"- {r['question']} `{r['candidate']}`: with dummy weights' activation floor the plan gives "
                  f"{floor_kv:,} KV tokens ({(floor_kv - kv) / kv:+.1%} against vLLM's {kv:,}; "
                  f"{(r['predicted_kv_tokens'] - kv) / kv:+.1%} without it)")
    for r in rows:
        if "peak_used_mib" in r:
            print(f"- online FP8 load, {r['load_test']}: peak {r['peak_used_mib'] / 1024:.1f} GiB while loading; "
                  f"{r['loaded']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("plans").add_argument("out", type=Path)
    sub.add_parser("report").add_argument("results", type=Path)
    a = ap.parse_args()
    make_plans(a.out) if a.cmd == "plans" else report(a.results)


if __name__ == "__main__":
    main()
