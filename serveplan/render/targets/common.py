"""What every target needs: the winning candidate, its adapter, per-replica launches, names and quoting."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from pathlib import PurePosixPath

from serveplan.render.engines.base import (EngineAdapter, ReplicaLaunch, assign_gpus, get_adapter, replica_port,
                                             served_checkpoint)
from serveplan.planner.checkpoints import user_checkpoint
from serveplan.planner.result import Plan
from serveplan.planner.spec import Candidate, Checkpoint, PlanRequest

CONTAINER_PORT = 8000  # what a replica listens on inside its pod
MODEL_VOLUME = "/models"  # the model volume in containers: HF downloads (HF_HOME) and local checkpoints


@dataclass(frozen=True)
class Deployment:
    """The plan's winner, resolved for rendering."""

    plan: Plan
    candidate: Candidate
    request: PlanRequest
    adapter: EngineAdapter
    checkpoint: Checkpoint
    base_port: int

    @property
    def model(self) -> str:
        """What the engine loads on this machine (launch.sh runs in the plan folder: relative paths hold)."""
        return self.checkpoint.id

    @property
    def local_checkpoint(self) -> bool:
        """The checkpoint is a folder, not a Hugging Face id (a quantize output or one you named)."""
        return self.checkpoint.source == "needs_quantize" or self.checkpoint.id.startswith(("/", ".", "~"))

    @property
    def container_model(self) -> str:
        """What the engine loads inside a container: HF ids as they are (downloaded into the model volume's
        HF_HOME), local folders under the model volume."""
        if not self.local_checkpoint:
            return self.checkpoint.id
        rel = self.checkpoint.id if self.checkpoint.source == "needs_quantize" else PurePosixPath(self.checkpoint.id).name
        return f"{MODEL_VOLUME}/{rel}"

    @property
    def fits_one_node(self) -> bool:
        return self.candidate.total_gpus <= self.request.inventory.gpus_per_node

    @property
    def replica_spans_nodes(self) -> bool:
        return self.candidate.gpus_per_replica > self.request.inventory.gpus_per_node

    @property
    def nodes_per_replica(self) -> int:
        g, per = self.candidate.gpus_per_replica, self.request.inventory.gpus_per_node
        return -(-g // per)

    @property
    def lb_port(self) -> int:
        return self.base_port + 80

    @property
    def name(self) -> str:
        return dns_name(f"serveplan-{self.candidate.engine}-{self.served_model_name.rsplit('/', 1)[-1]}")

    @property
    def served_model_name(self) -> str:
        """Clients ask for the model by its base name, whatever precision serves it."""
        return self.checkpoint.base_id

    def local_launches(self, host: str = "0.0.0.0", *, container: bool = False) -> list[ReplicaLaunch]:
        """One process per replica on this machine: disjoint GPUs, ports base_port + i."""
        gpus = assign_gpus(self.candidate, self.request.inventory.gpus_per_node)
        return [self.render(i, gpus[i], replica_port(self.base_port, i), host, container=container)
                for i in range(self.candidate.replicas)]

    @classmethod
    def of(cls, plan: Plan, checkpoint: Checkpoint, base_port: int) -> "Deployment":
        cand = plan.winner.config.model_copy(update={"checkpoint": checkpoint})
        eng = plan.request.engine  # the adapter renders for the request's engine version
        adapter = get_adapter(cand.engine, eng.version if eng.name == cand.engine else None)
        return cls(plan=plan, candidate=cand, request=plan.request, adapter=adapter,
                   checkpoint=checkpoint, base_port=base_port)

    def render(self, replica: int, gpus: list[int], port: int, host: str = "0.0.0.0", *,
               container: bool = False, extra_args: tuple[str, ...] = (), check: bool = True) -> ReplicaLaunch:
        """One replica's command. check: an invalid command is a bug in the adapter (the launcher checks
        itself instead, since your --engine-args may be what is wrong)."""
        model = self.container_model if container else self.model
        launch = self.adapter.render(self.candidate, self.request, model=model, replica=replica, gpus=gpus,
                                     port=port, host=host, served_model_name=self.served_model_name,
                                     extra_args=extra_args)
        problems = self.adapter.validate(launch.argv) if check else []
        if problems:  # a bug in the adapter, not a user error
            raise AssertionError(f"{self.adapter.name} rendered an invalid command: {'; '.join(problems)}")
        return launch


def resolve(plan: Plan, model: str | None, base_port: int) -> Deployment:
    if not plan.ranked:
        raise ValueError("the plan has no candidates to deploy")
    cand, req = plan.winner.config, plan.request
    ckpt = user_checkpoint(model, cand.weight_dtype, req.model) if model else served_checkpoint(cand, req)
    return Deployment.of(plan, ckpt, base_port)


def dns_name(s: str) -> str:
    """A Kubernetes DNS-1123 label."""
    s = re.sub(r"[^a-z0-9-]+", "-", s.lower()).strip("-")
    return re.sub(r"-+", "-", s)[:63].rstrip("-") or "serveplan"


def sh_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def header(dep: Deployment, comment: str = "#") -> str:
    c = dep.candidate
    return (f"{comment} Generated by serveplan: {dep.checkpoint.describe()} on {dep.request.inventory.describe()}\n"
            f"{comment} {c.engine} {dep.adapter.version}: {c.label()}\n")
