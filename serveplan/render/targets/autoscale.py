"""Autoscaling a fleet model's Deployment from its planned capacity: a KEDA ScaledObject (keda.sh/v1alpha1) on a
Prometheus query of vLLM's waiting requests, and the same rule as a HorizontalPodAutoscaler (autoscaling/v2) for
clusters with prometheus-adapter instead of KEDA.

The numbers come from the fleet plan (planner.fleet): minReplicaCount = the replicas the offered load needs at
each replica's capacity within the SLO, maxReplicaCount = the replicas assigned plus what the pool's leftover
GPUs hold (several models may count the same leftover GPUs: the pool cannot give all of them their maximum at
once), and the target of waiting requests per replica = planner.fleet.queue_threshold (its docstring derives
it from the TTFT target and the predicted prefill throughput).
"""

from __future__ import annotations

import yaml

from serveplan.planner.fleet import Allocation
from serveplan.render.targets.common import resolve

PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"  # prometheus-operator's default Service
WAITING = "vllm:num_requests_waiting"  # vLLM's gauge of requests queued for their prefill, label model_name
ADAPTER_METRIC = "vllm_num_requests_waiting"  # the same gauge as prometheus-adapter exposes it per pod
SCALE_DOWN = {"stabilizationWindowSeconds": 600, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}


def _metadata(deployment: str) -> dict:
    """An autoscaler is named and labelled as the Deployment it scales."""
    return {"name": deployment, "labels": {"app.kubernetes.io/name": deployment,
                                           "app.kubernetes.io/managed-by": "serveplan"}}


def scaled_object(alloc: Allocation, deployment: str, served_model_name: str,
                  server: str = PROMETHEUS) -> dict:
    """KEDA ScaledObject: scale `deployment` on the waiting requests per replica (metricType AverageValue: KEDA
    divides the query's sum by the replica count); scale down one replica per 5 minutes, after 10 quiet ones."""
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": _metadata(deployment),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicaCount": alloc.replicas_needed, "maxReplicaCount": alloc.replicas_max,
            "pollingInterval": 15, "cooldownPeriod": 300,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": SCALE_DOWN}}},
            "triggers": [{
                "type": "prometheus", "metricType": "AverageValue",
                "metadata": {"serverAddress": server,
                             "query": f'sum({WAITING}{{model_name="{served_model_name}"}})',
                             "threshold": str(alloc.queue_threshold)},
            }],
        },
    }


def horizontal_pod_autoscaler(alloc: Allocation, deployment: str) -> dict:
    """autoscaling/v2 HPA on the per-pod gauge (needs a prometheus-adapter rule that serves
    vllm:num_requests_waiting as the pods metric vllm_num_requests_waiting)."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(deployment),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
            "minReplicas": alloc.replicas_needed, "maxReplicas": alloc.replicas_max,
            "metrics": [{"type": "Pods", "pods": {
                "metric": {"name": ADAPTER_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(alloc.queue_threshold)}}}],
            "behavior": {"scaleDown": SCALE_DOWN},
        },
    }


def autoscale_files(alloc: Allocation) -> dict[str, str]:
    """k8s/keda-scaledobject.yaml and k8s/hpa.yaml for a vLLM plan whose replica is a Deployment's pod; {} (with
    the reason in k8s/AUTOSCALING.md) otherwise."""
    dep = resolve(alloc.plan, None, 8000)
    if dep.candidate.engine != "vllm" or dep.replica_spans_nodes:
        why = ("the metric is vLLM's" if dep.candidate.engine != "vllm" else
               "a replica spanning nodes is a LeaderWorkerSet, not a Deployment")
        return {"k8s/AUTOSCALING.md": f"No autoscaler written: {why}.\n"}
    head = (f"# {alloc.label}: {alloc.replicas_needed} replicas carry {alloc.offered_rps:g} req/s at "
            f"{alloc.capacity_rps_per_replica:.2f} each within the SLO; up to {alloc.replicas_max} on pool "
            f"{alloc.pool}. Scale out above {alloc.queue_threshold} waiting requests per replica (half of what one "
            f"replica prefills, at {alloc.prefill_tok_s:,.0f} prompt tok/s, within the TTFT target).\n")
    return {
        "k8s/keda-scaledobject.yaml": head + yaml.safe_dump(scaled_object(alloc, dep.name, dep.served_model_name),
                                                            sort_keys=False),
        "k8s/hpa.yaml": head + "# Needs prometheus-adapter serving vllm:num_requests_waiting as the pods metric "
                        f"{ADAPTER_METRIC}.\n" + yaml.safe_dump(horizontal_pod_autoscaler(alloc, dep.name),
                                                                 sort_keys=False),
    }
