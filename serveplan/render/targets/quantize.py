"""The step that makes a checkpoint no one has published (Checkpoint.source == needs_quantize).

quantize.sh runs `serveplan quantize` on this machine (extra `quantize`: llm-compressor) into the folder the
launch files serve; k8s/quantize-job.yaml runs the same llm-compressor recipe in a GPU Job that writes into the
model volume, where the Deployment's init container waits for it. The recipes mirror
`serveplan.quantize.recipe.build_recipe` (a test keeps the two in step).
"""

from __future__ import annotations

import yaml

from serveplan.render.targets.common import MODEL_VOLUME, Deployment, header

# llm-compressor modifiers per quantize method, as Python source (same as quantize.build_recipe).
RECIPES = {
    "fp8": '[QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=["lm_head"])]',
    "gptq": '[GPTQModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])]',
    "w8a8": ('[SmoothQuantModifier(smoothing_strength=0.8), '
             'GPTQModifier(targets="Linear", scheme="W8A8", ignore=["lm_head"])]'),
    "awq": ('[AWQModifier(duo_scaling="both"), '
            'QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"])]'),
}
CALIBRATED = {"fp8": False, "gptq": True, "w8a8": True, "awq": True}
LLMCOMPRESSOR = "llmcompressor>=0.14,<0.15"
# The image the quantize job runs llm-compressor in; not the serving engine's version (engine.version): it only
# hosts llm-compressor, and the job was written against this one.
QUANTIZE_IMAGE = "vllm/vllm-openai:v0.26.0"

_SCRIPT = '''"""Quantize {base} with llm-compressor ({method}), as `serveplan quantize --method {method}` does; the
checkpoint appears at OUT only when complete (written beside it, then renamed)."""
import os, shutil, sys, tempfile

from llmcompressor import oneshot
from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
from llmcompressor.modifiers.transform.awq import AWQModifier
from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
from transformers import AutoModelForCausalLM, AutoTokenizer

base, out = sys.argv[1], sys.argv[2]
if os.path.exists(os.path.join(out, "config.json")):
    sys.exit(print(out, "already holds a checkpoint"))
model = AutoModelForCausalLM.from_pretrained(base, torch_dtype="auto", device_map="auto")
tokenizer = AutoTokenizer.from_pretrained(base)
calibration = {calib}
oneshot(model=model, tokenizer=tokenizer, recipe={recipe}, **calibration)
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
tmp = tempfile.mkdtemp(prefix=".quantize-", dir=os.path.dirname(out) or ".")
try:
    model.save_pretrained(tmp, save_compressed=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
print("wrote", out)
'''


def quantize_script(method: str, base: str) -> str:
    calib = ('dict(dataset="open_platypus", num_calibration_samples=256, max_seq_length=512)'
             if CALIBRATED[method] else "{}")
    return _SCRIPT.format(base=base, method=method, recipe=RECIPES[method], calib=calib)


def quantize_sh(dep: Deployment) -> str:
    ck = dep.checkpoint
    return ("#!/usr/bin/env bash\n" + header(dep) +
            f"# Makes the {ck.weight_dtype} checkpoint this plan serves ({ck.quantize_method}, compressed-tensors) "
            f"at ./{ck.id}.\n# Needs a GPU with room for the bf16 model and `pip install 'serveplan[quantize]'`.\n"
            'set -euo pipefail\ncd "$(dirname "$0")"\n'
            f'if [ -f {ck.id}/config.json ]; then echo "{ck.id} already exists"; exit 0; fi\n'
            f"serveplan quantize --model {ck.base_id} --method {ck.quantize_method} -o {ck.id}\n")


def launch_guard(dep: Deployment) -> str:
    """launch.sh refuses to start an engine on a checkpoint that is not there yet."""
    ck = dep.checkpoint
    return (f'if [ ! -f {ck.id}/config.json ]; then\n'
            f'  echo "the {ck.weight_dtype} checkpoint {ck.id} does not exist yet: run ./quantize.sh first" >&2\n'
            f'  exit 2\nfi\n\n')


def quantize_job(dep: Deployment, pvc: str, gpus: int) -> list[dict]:
    """A ConfigMap with the script and a Job that runs it on the vLLM image, writing into the model volume."""
    ck = dep.checkpoint
    name = f"{dep.name}-quantize"
    out = f"{MODEL_VOLUME}/{ck.id}"
    script = quantize_script(ck.quantize_method or "", ck.base_id)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
          "data": {"quantize_checkpoint.py": script}}
    container = {
        "name": "quantize", "image": QUANTIZE_IMAGE,
        "command": ["bash", "-c", f"pip install --no-cache-dir '{LLMCOMPRESSOR}' && "
                    f"python3 /etc/serveplan-quantize/quantize_checkpoint.py {ck.base_id} {out}"],
        "env": [{"name": "HF_HOME", "value": f"{MODEL_VOLUME}/hf"},
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token",
                                                                     "optional": True}}}],
        "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
        "volumeMounts": [{"name": "models", "mountPath": MODEL_VOLUME},
                         {"name": "script", "mountPath": "/etc/serveplan-quantize", "readOnly": True}],
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"backoffLimit": 1, "template": {"spec": {
               "restartPolicy": "Never", "containers": [container],
               "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": pvc}},
                           {"name": "script", "configMap": {"name": name}}]}}}}
    return [cm, job]


def quantize_files(dep: Deployment, pvc: str) -> dict[str, str]:
    docs = quantize_job(dep, pvc, dep.candidate.gpus_per_replica)
    return {"quantize.sh": quantize_sh(dep),
            "k8s/quantize-job.yaml": header(dep) + "# Apply before deployment.yaml; it writes the checkpoint "
            "the Deployment's init container waits for.\n" + yaml.safe_dump_all(docs, sort_keys=False, width=120)}
