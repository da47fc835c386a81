"""On the GPU machine: launch each planned candidate of benchmarks/launch_safety.py through `plan launch`, with
dummy weights in a local folder that declares the planned checkpoint format, and record what vLLM reports.

  PATH=benchmarks/gpu/bin:$PATH python3 benchmarks/gpu/launch_safety_run.py DIR RESULTS.jsonl [--only Q,..]

Runs candidates side by side on free GPUs (first fit, in manifest order), each as
`python3 -m serveplan.cli launch PLAN --detach --model FOLDER --port P` then `plan stop`; appends one JSON
line per candidate to RESULTS: healthy or why not, vLLM's "Model loading took X GiB" (max over workers),
"GPU KV cache size: N tokens" (replica 0), start seconds. Load tests (`--load-tests`) start vLLM directly on
a bf16 folder with `--quantization fp8` (what the planner refuses on an 80 GB card) and record how it ends.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "serveplan" / "conf" / "model"
LOCK = threading.Lock()

_CT = {  # compressed-tensors quantization_config per planned precision (llm-compressor's presets)
    "fp8": {"weights": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "channel", "dynamic": False},
            "input_activations": {"num_bits": 8, "type": "float", "symmetric": True, "strategy": "token",
                                  "dynamic": True}, "format": "float-quantized"},
    "int8": {"weights": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "channel", "dynamic": False},
             "input_activations": {"num_bits": 8, "type": "int", "symmetric": True, "strategy": "token",
                                   "dynamic": True}, "format": "int-quantized"},
    "gptq": {"weights": {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 128,
                         "dynamic": False}, "format": "pack-quantized"},
    "awq": {"weights": {"num_bits": 4, "type": "int", "symmetric": False, "strategy": "group", "group_size": 128,
                        "dynamic": False}, "format": "pack-quantized"},
}


def quant_config(fmt: str) -> dict | None:
    if fmt == "hf":
        return None
    if fmt == "fp8":
        return {"quant_method": "fp8", "activation_scheme": "dynamic"}
    if fmt == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
    if fmt == "gptq":
        # modules_in_block_to_quantize as AutoGPTQ writes it: without it vLLM 0.26.0 reads the checkpoint's safetensors
        # to find the quantized layers, a dummy-weights folder has none, and every layer runs bf16 (session 19's P8)
        return {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
                "modules_in_block_to_quantize": [["self_attn.k_proj", "self_attn.v_proj", "self_attn.q_proj"],
                                                 ["self_attn.o_proj"], ["mlp.up_proj", "mlp.gate_proj"],
                                                 ["mlp.down_proj"]]}
    method = fmt.removeprefix("ct-")
    g = dict(_CT[method])
    form = g.pop("format")
    # MoE routers stay bf16, as in published compressed-tensors MoE checkpoints (llm-compressor's "re:.*mlp.gate$"):
    # vLLM builds Qwen3-MoE's router with the quantization config, and a dummy FP8 router is ~98% zeros (session 12).
    # Dense models have no module of that name (gate_proj is not matched); Mixtral's router is block_sparse_moe.gate
    # (RedHat's published Mixtral W8A8 ignores it so).
    return {"quant_method": "compressed-tensors", "format": form, "quantization_status": "compressed",
            "config_groups": {"group_0": {"targets": ["Linear"], **g}},
            "ignore": ["lm_head", "re:.*mlp.gate$", "re:.*block_sparse_moe.gate$"]}


def make_folder(base: Path, model: str, fmt: str) -> Path:
    """config.json from the catalog's architecture numbers + the format's quantization_config + a synthetic
    word-level tokenizer (as ../shared/gpu/mkmodel.py makes them)."""
    import yaml

    out = base / f"{model}-{fmt}"
    if (out / "config.json").exists():
        return out
    m = yaml.safe_load((CATALOG / f"{model}.yaml").read_text())
    moe = m["num_experts"] > 0
    model_type = {"MixtralForCausalLM": "mixtral", "MistralForCausalLM": "mistral",
                  "Qwen2ForCausalLM": "qwen2", "Qwen3MoeForCausalLM": "qwen3_moe", "Qwen3ForCausalLM": "qwen3",
                  "Gemma2ForCausalLM": "gemma2"}.get(m["architecture"], "llama")
    cfg = {"architectures": [m["architecture"]], "model_type": model_type,
           "hidden_size": m["hidden_size"], "intermediate_size": m["intermediate_size"],
           "num_hidden_layers": m["num_layers"], "num_attention_heads": m["num_attention_heads"],
           "num_key_value_heads": m["num_kv_heads"], "head_dim": m["head_dim"], "vocab_size": m["vocab_size"],
           "max_position_embeddings": min(m["max_position_embeddings"], 32768), "rope_theta": 500000.0,
           "attention_bias": False, "mlp_bias": False, "hidden_act": "silu", "rms_norm_eps": 1e-5,
           "tie_word_embeddings": m["tie_word_embeddings"], "torch_dtype": "bfloat16", "bos_token_id": 0,
           "eos_token_id": 1, "initializer_range": 0.02, "use_cache": True}
    if model_type in ("mistral", "qwen2"):
        cfg.update(sliding_window=None, use_sliding_window=False, rope_theta=1e6)
    if model_type == "qwen3":  # dense Qwen3 (session 28): q/k RMSNorm, no attention bias, full attention
        cfg.update(sliding_window=None, use_sliding_window=False, max_window_layers=m["num_layers"], rope_theta=1e6,
                   rms_norm_eps=1e-6)
    if model_type == "gemma2":  # session 28, as google/gemma-2-27b-it's config.json: GeGLU (tanh GELU), logit
        # soft-capping, every other layer a 4,096-token sliding window (vLLM's hybrid KV cache manager sizes those)
        cfg.update(hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                   query_pre_attn_scalar=m["hidden_size"] // m["num_attention_heads"], attn_logit_softcapping=50.0,
                   final_logit_softcapping=30.0, sliding_window=4096, cache_implementation="hybrid",
                   rope_theta=10000.0, rms_norm_eps=1e-6)
    if moe and model_type == "qwen3_moe":  # every layer routed; the catalog's intermediate_size is per expert
        cfg.update(num_experts=m["num_experts"], num_experts_per_tok=m["experts_per_token"],
                   moe_intermediate_size=m["intermediate_size"], intermediate_size=6144, norm_topk_prob=True,
                   decoder_sparse_step=1, mlp_only_layers=[], sliding_window=None, use_sliding_window=False,
                   router_aux_loss_coef=0.001, rope_theta=1e6, rms_norm_eps=1e-6)
    elif moe:
        cfg.update(num_local_experts=m["num_experts"], num_experts_per_tok=m["experts_per_token"],
                   sliding_window=None, router_aux_loss_coef=0.02, rope_theta=1e6)
    q = quant_config(fmt)
    if q and moe and fmt == "awq":  # AutoAWQ leaves MoE routers in bf16 (its modules_to_not_convert = ["gate"])
        q["modules_to_not_convert"] = ["gate"]
    if q:
        cfg["quantization_config"] = q
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(2, cfg["vocab_size"])}
    vocab["<s>"], vocab["</s>"] = 0, 1
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t2"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "t2",
        "model_max_length": 131072}))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": 1}))
    if model_type != "llama":
        # transformers picks the tokenizer class from config.json's model_type: a qwen2 folder loads the
        # synthetic vocabulary as Qwen2Tokenizer, whose pre-tokenizer regex does not round-trip it, and the
        # server then saw about half the prompt tokens the client counted (session 5). tokenizer/ is the same
        # vocabulary under a llama config; pass it as --tokenizer to vLLM and to the benches.
        tdir = out / "tokenizer"
        tdir.mkdir(exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (tdir / name).write_text((out / name).read_text())
        (tdir / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": cfg["vocab_size"]}))
    return out


def tokenizer_of(folder: Path) -> Path:
    """The tokenizer folder to pass as --tokenizer for a make_folder folder (see make_folder)."""
    return folder / "tokenizer" if (folder / "tokenizer" / "tokenizer.json").exists() else folder


def read_log(log: Path) -> dict:
    return log_memory(log.read_text(errors="replace") if log.exists() else "")


def log_memory(text: str) -> dict:
    """What a vLLM log says of memory: weights loaded, KV tokens and GiB, peak activation; and its last error line."""
    loads = [float(x) for x in re.findall(r"Model loading took ([\d.]+) GiB", text)]
    kv = re.findall(r"GPU KV cache size: ([\d,]+) tokens", text)
    avail = re.findall(r"Available KV cache memory: ([\d.]+) GiB", text)
    act = re.findall(r"([\d.]+) GiB for peak activation", text)
    err = [ln for ln in text.splitlines() if re.search(r"Error|error:|OutOfMemory|out of memory", ln)]
    return {"weights_gib": max(loads) if loads else None, "kv_tokens": int(kv[0].replace(",", "")) if kv else None,
            "kv_gib_vllm": float(avail[0]) if avail else None,
            "peak_activation_gib": float(act[0]) if act else None, "log_error": err[-1][-300:] if err else None}


def gpu_name() -> str:
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return out.stdout.strip().splitlines()[0]


def run_one(job: dict, gpus: list[int], port: int, models: Path, results: Path) -> None:
    t0 = time.time()
    row = dict(job, gpus_used=gpus, port=port)
    plan_dir = ROOT / job["dir"]
    try:
        folder = make_folder(models, job["model"], job["dummy_format"])
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(map(str, gpus)), PYTHONUNBUFFERED="1")
        engine_args, extra, tokenizer = [], [], tokenizer_of(folder)
        if tokenizer != folder:  # the synthetic vocabulary under a llama config (make_folder says why):
            # under qwen2's tokenizer class the smoke prompt encoded to nothing and vLLM refused it (sessions 3, 23)
            engine_args.append(f"--tokenizer {tokenizer}")
        if job.get("emulate_util"):  # an 80 GB card's budget on a bigger one: same util x total, same KV
            extra = ["--force"]
            engine_args.append(f"--gpu-memory-utilization {job['emulate_util']:.4f}")
        if engine_args:
            extra += ["--engine-args", " ".join(engine_args)]
        p = subprocess.run([sys.executable, "-m", "serveplan.cli", "launch", str(plan_dir), "--detach",
                            "--model", str(folder), "--port", str(port), "--health-timeout", "720", *extra],
                           env=env, capture_output=True, text=True, timeout=900)
        row["launch_rc"] = p.returncode
        row["healthy"] = p.returncode == 0
        row["start_s"] = round(time.time() - t0, 1)
        if p.returncode != 0:
            row["why"] = (p.stderr.strip().splitlines() or ["?"])[-1][-300:]
        row.update(read_log(plan_dir / "logs" / "replica-0.log"))
        try:
            rj = json.loads((plan_dir / "run.json").read_text())
            row["argv"] = rj["replicas"][0]["argv"]
            row["env"] = rj["replicas"][0]["env"]
        except Exception:  # noqa: BLE001
            pass
    except Exception as e:  # noqa: BLE001
        row["healthy"], row["why"] = False, f"{type(e).__name__}: {e}"
    finally:
        subprocess.run([sys.executable, "-m", "serveplan.cli", "stop", str(plan_dir)], capture_output=True,
                       timeout=120)
        row["total_s"] = round(time.time() - t0, 1)
        with LOCK:
            with open(results, "a") as f:
                f.write(json.dumps(row) + "\n")
        print(f"[{row['total_s']:6.1f}s] {job['question']} #{job['rank']} healthy={row.get('healthy')} "
              f"kv={row.get('kv_tokens')} pred={job['predicted_kv_tokens']} w={row.get('weights_gib')}", flush=True)


def load_test(name: str, model: str, gpu: int, port: int, models: Path, results: Path) -> None:
    """vLLM's online FP8 (`--quantization fp8`) on a bf16 folder: does it load on this card?"""
    t0 = time.time()
    folder = make_folder(models, model, "hf")
    log = models / f"load-{name}.log"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=str(gpu), PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(folder), "--load-format", "dummy",
           "--quantization", "fp8", "--max-model-len", "4096", "--port", str(port), "--enforce-eager"]
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    healthy = False
    peak_mib = 0.0
    while time.time() - t0 < 420 and p.poll() is None:
        used = subprocess.run(["nvidia-smi", "-i", str(gpu), "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True).stdout.strip()
        peak_mib = max(peak_mib, float(used or 0))
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            healthy = True
            break
        except Exception:  # noqa: BLE001
            time.sleep(0.5)
    peak = subprocess.run(["nvidia-smi", "-i", str(gpu), "--query-gpu=memory.used", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip()
    try:
        os.killpg(p.pid, 9)
    except ProcessLookupError:
        pass
    p.wait()
    row = {"load_test": name, "model": model, "cmd": " ".join(cmd), "healthy": healthy, "exit": p.returncode,
           "seconds": round(time.time() - t0, 1), "mem_used_at_end": peak,
           "peak_used_gib": round(peak_mib / 1024, 2), **read_log(log)}
    text = log.read_text(errors="replace")
    oom = [ln for ln in text.splitlines() if "out of memory" in ln.lower() or "OutOfMemoryError" in ln]
    row["oom_line"] = oom[0][-400:] if oom else None
    with LOCK:
        with open(results, "a") as f:
            f.write(json.dumps(row) + "\n")
    print(f"load test {name}: healthy={healthy} oom={bool(oom)} weights={row['weights_gib']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("results", type=Path)
    ap.add_argument("--models", type=Path, default=Path("/tmp/ls-models"))
    ap.add_argument("--only", default="", help="comma-separated questions")
    ap.add_argument("--load-tests", action="store_true")
    ap.add_argument("--emulate", default="70b-1gpu-fp8,70b-2gpu-chat",
                    help="on an H200: also run these questions' H100 plans at the H100's memory budget")
    ap.add_argument("--gpus", default="", help="comma-separated GPU indices to use (default: all), leaving the rest "
                    "to another script on the same machine")
    a = ap.parse_args()
    name = gpu_name()
    gpu = "h200" if "H200" in name else "h100-sxm"
    ngpus = len(subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip().splitlines())
    manifest = json.loads((a.dir / "manifest.json").read_text())
    usable = len(a.gpus.split(",")) if a.gpus else ngpus
    jobs = [j for j in manifest if j["gpu"] == gpu and j["gpus"] <= usable]
    if gpu == "h200":  # the 80 GB questions too: H100 plans at the H100's budget (0.92 x 79.18 GiB)
        total = float(subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True).stdout.split()[0]) / 1024
        util = 0.92 * 79.18 / (total * 0.9957)  # CUDA's total is ~0.43% under nvidia-smi's
        jobs = [dict(j, emulate_util=util) for j in manifest
                if j["gpu"] == "h100-sxm" and j["question"] in a.emulate.split(",")] + jobs
    if a.only:
        keep = a.only.split(",")  # QUESTION (all its ranks) or QUESTION#RANK
        jobs = [j for j in jobs if j["question"] in keep or f"{j['question']}#{j['rank']}" in keep]
        jobs.sort(key=lambda j: next(i for i, k in enumerate(keep) if k in (j["question"],
                                                                         f"{j['question']}#{j['rank']}")))
    print(f"{name} x{ngpus}: {len(jobs)} launches", flush=True)
    a.models.mkdir(parents=True, exist_ok=True)
    free = [int(g) for g in a.gpus.split(",")] if a.gpus else list(range(ngpus))
    port = 8100
    pending: list = [("load", "70b-online-fp8", "llama-3.1-70b"), ("load", "mixtral-online-fp8", "mixtral-8x7b")] \
        if a.load_tests else []
    pending = jobs[:2] + pending + jobs[2:] if pending else jobs
    busy: dict[threading.Thread, list[int]] = {}
    while pending or busy:
        for t in [t for t in busy if not t.is_alive()]:
            free += busy.pop(t)
        started = False
        for item in list(pending):
            need = 1 if isinstance(item, tuple) else item["gpus"]
            if need <= len(free):
                gs, free = free[:need], free[need:]
                port += 10
                if isinstance(item, tuple):
                    t = threading.Thread(target=load_test, args=(item[1], item[2], gs[0], port, a.models, a.results))
                else:
                    t = threading.Thread(target=run_one, args=(item, gs, port, a.models, a.results))
                t.start()
                busy[t] = gs
                pending.remove(item)
                started = True
                time.sleep(2)
        if not started:
            time.sleep(2)
    print("done", flush=True)


if __name__ == "__main__":
    main()
