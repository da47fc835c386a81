"""Deployment artifacts for a plan's winner: launch.sh, docker-compose.yaml, k8s/, ray/, nginx.conf.

`render_artifacts` renders everything in memory; `write_artifacts` writes it with plan.yaml as one folder that
replaces `outdir` whole (fileio.write_tree_atomic): no stale file of an earlier plan, nothing half-written.

What is written:
  launch.sh, docker-compose.yaml     when the plan fits on one node (replicas on disjoint GPUs, ports base+i)
  nginx.conf, nginx-compose.conf     when there is more than one replica (least_conn upstream; the first for a
                                     proxy on this machine, the second for compose's lb service)
  k8s/deployment.yaml                Deployment + Service (+ ConfigMap) when each replica fits on one node
  k8s/leaderworkerset.yaml           LeaderWorkerSet + Service when a vLLM replica spans nodes
  ray/head.sh worker.sh serve.sh     vLLM on a multi-node inventory (+ ray/nginx.conf for several replicas)
  quantize.sh, k8s/quantize-job.yaml when the checkpoint must be made (no published one of that precision)
  gateway/litellm.yaml, README.md    LiteLLM proxy in front of the local replicas (one route, each replica an
                                     equal-weight deployment) when the plan fits on one node (gateway.py)
  kserve/llminferenceservice.yaml    KServe LLMInferenceService, vLLM plans whose replica fits on one node
  ray/serve_llm.py                   Ray Serve LLM application (LLMConfig + build_openai_app), vLLM plans
  sagemaker/, vertex/                managed endpoints, vLLM plans whose replica is one machine of cloud.py's tables
  engine files (e.g. trtllm options) next to launch.sh, referenced by relative name
  README.md                          what was written and what was not, and why
"""

from __future__ import annotations

from pathlib import Path

from serveplan.render.targets.common import Deployment, resolve
from serveplan.render.targets.compose import compose_yaml
from serveplan.render.targets.gateway import plan_gateway_files
from serveplan.render.targets.k8s import k8s_files, pvc_name
from serveplan.render.targets.kserve import kserve_files
from serveplan.render.targets.managed import sagemaker_files, vertex_files
from serveplan.render.targets.nginx import nginx_conf
from serveplan.render.targets.quantize import launch_guard, quantize_files
from serveplan.render.targets.ray_serve import serve_llm_py
from serveplan.render.targets.shell import launch_sh, ray_scripts
from serveplan.planner.result import Plan

__all__ = ["write_artifacts", "render_artifacts"]


def render_artifacts(plan: Plan, *, model: str | None = None, base_port: int = 8000) -> dict[str, str]:
    """Relative path -> content of every artifact for the plan's winner."""
    dep = resolve(plan, model, base_port)
    files: dict[str, str] = {}
    notes: list[str] = []
    needs_quantize = dep.checkpoint.source == "needs_quantize"
    if needs_quantize:
        files.update(quantize_files(dep, pvc_name(dep)))
    if dep.fits_one_node:
        launches = dep.local_launches()
        files["launch.sh"] = launch_sh(dep, launches, guard=launch_guard(dep) if needs_quantize else "")
        files["docker-compose.yaml"] = compose_yaml(dep, dep.local_launches(container=True))
        for x in launches:
            files.update(x.files)
        if len(launches) > 1:
            files["nginx.conf"] = nginx_conf(dep, [f"127.0.0.1:{x.port}" for x in launches])
            files["nginx-compose.conf"] = nginx_conf(dep, [f"replica-{x.replica}:{x.port}" for x in launches])
    else:
        notes.append(f"launch.sh / docker-compose.yaml: not written, the plan needs {dep.candidate.total_gpus} "
                     f"GPUs and one node has {dep.request.inventory.gpus_per_node}.")
    gateway, why = plan_gateway_files(dep)
    files.update(gateway)
    if why:
        notes.append(why)
    if dep.replica_spans_nodes and dep.candidate.engine != "vllm":
        notes.append(f"k8s/: not written, a {dep.candidate.engine} replica spanning nodes has no recipe here "
                     "(multi-node LeaderWorkerSet is rendered for vLLM only).")
    else:
        files.update(k8s_files(dep))
    if dep.request.inventory.nodes > 1:
        if dep.candidate.engine == "vllm":
            files.update(ray_scripts(dep))
            if dep.candidate.replicas > 1:
                # serve.sh runs every replica's API server on the head node (Ray places the workers):
                # the front balances them there (`nginx -c $PWD/ray/nginx.conf` on the head node).
                files["ray/nginx.conf"] = nginx_conf(dep, [f"127.0.0.1:{dep.base_port + i}"
                                                           for i in range(dep.candidate.replicas)])
        else:
            notes.append(f"ray/: not written: {dep.candidate.engine} does not run on a Ray cluster (only vLLM "
                         f"does); {'its k8s/ manifests place one replica per node' if not dep.replica_spans_nodes else 'a replica spanning nodes has no launchable recipe here: plan with --engine vllm, or with TP within one node'}.")
    _managed(dep, files, notes)
    files["README.md"] = _readme(dep, files, notes)
    return files


def _managed(dep: Deployment, files: dict[str, str], notes: list[str]) -> None:
    """KServe, Ray Serve LLM, SageMaker and Vertex AI: vLLM plans only."""
    engine = dep.candidate.engine
    if engine != "vllm":
        notes.append(f"kserve/, ray/serve_llm.py, sagemaker/, vertex/: not written: they are rendered for vLLM "
                     f"plans only, and this plan serves with {engine}.")
        return
    if dep.replica_spans_nodes:
        notes.append("kserve/: not written: a replica spans nodes (KServe's multi-node LeaderWorkerSet form is not "
                     "rendered here; k8s/leaderworkerset.yaml is).")
    else:
        files.update(kserve_files(dep))
    files["ray/serve_llm.py"] = serve_llm_py(dep)
    for render in (sagemaker_files, vertex_files):
        written, why = render(dep)
        files.update(written)
        if why:
            notes.append(why)


def _readme(dep: Deployment, files: dict[str, str], notes: list[str]) -> str:
    c = dep.candidate
    lines = [f"# {dep.model}: {c.engine} {dep.adapter.version}", "", f"Winner: `{c.label()}` on "
             f"{dep.request.inventory.describe()}; image `{dep.adapter.image}`.", "", "Files:", ""]
    lines += [f"- `{p}`" for p in sorted(files)] + [""]
    ck = dep.checkpoint
    lines += [f"Weights: {ck.describe()}.", ""]
    if ck.found:
        lines += [f"Found at: {ck.found}", ""]
    if ck.source == "needs_quantize":
        lines += ["No published checkpoint of this precision exists for this engine: run `./quantize.sh` "
                  "(this machine) or apply `k8s/quantize-job.yaml` (cluster) first; launch.sh and the "
                  "Deployment's init container wait for it.", ""]
    if c.replicas > 1 and dep.fits_one_node:
        lines += [f"Replicas listen on ports {dep.base_port}..{dep.base_port + c.replicas - 1}; the nginx "
                  f"configs balance them on port {dep.lb_port}.", ""]
    if "gateway/litellm.yaml" in files:
        ports = (f"port {dep.base_port}" if c.replicas == 1
                 else f"ports {dep.base_port}..{dep.base_port + c.replicas - 1}")
        lines += [f"`gateway/litellm.yaml`: a LiteLLM proxy in front of the replicas at {ports} (as launch.sh and "
                  f"`plan launch` start them; after `plan launch --port P` change its `api_base` values); "
                  f"`gateway/README.md` says how to run it.", ""]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def write_artifacts(plan: Plan, outdir: Path, *, model: str | None = None, base_port: int = 8000) -> list[Path]:
    """Write the plan folder (plan.yaml, plan.json and every artifact) as one folder that replaces `outdir`
    whole (see serveplan.planner.report.write_outdir); returns the written paths (sorted)."""
    from serveplan.planner.report import write_outdir

    return write_outdir(plan, Path(outdir), extra_files=lambda p: render_artifacts(p, model=model,
                                                                                  base_port=base_port))
