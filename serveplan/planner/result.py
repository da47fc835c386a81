"""What the planner returns: memory breakdowns, predictions with their sources, and the Plan."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from serveplan.planner.spec import Candidate, PlanRequest


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemoryBreakdown(_Frozen):
    """Per-GPU memory of one candidate, in GB (1e9 bytes)."""

    capacity_gb: float = Field(description="GPU memory.")
    budget_gb: float = Field(description="What the engine may use (capacity x utilization).")
    weights_gb: float = Field(description="Weights on one GPU of the worst stage.")
    activations_gb: float = Field(description="Peak activations of the engine's profiling pass.")
    reserve_gb: float = Field(description="CUDA graphs + non-torch memory (context, NCCL).")
    kv_cache_gb: float = Field(description="Left for the KV cache; negative when it does not fit.")
    kv_bytes_per_token: float = Field(description="KV bytes per token on one GPU.")
    kv_tokens: int = Field(description="Tokens of KV cache per replica.")
    max_concurrent_seqs: int = Field(description="Sequences of the traffic's mean length that fit at once.")
    fits: bool = Field(description="The engine would start with this configuration.")
    reason: str = Field(default="", description="Why not, when it does not fit.")

    @property
    def other_gb(self) -> float:
        return self.activations_gb + self.reserve_gb


class Percentiles(_Frozen):
    p50: float = Field(description="Median.")
    p90: float = Field(description="90th percentile.")
    p99: float = Field(description="99th percentile.")
    mean: float = Field(description="Mean.")

    def at(self, p: str) -> float:
        return float(getattr(self, p))


class Predictions(_Frozen):
    """What users of the endpoint would see, for the whole deployment (all replicas)."""

    ttft_ms: Percentiles = Field(description="Time to first token, ms.")
    tpot_ms: Percentiles = Field(description="Time per output token after the first, ms.")
    e2e_ms: Percentiles = Field(description="Request latency, ms.")
    throughput_tok_s: float = Field(description="Output tokens/s, all replicas.")
    input_tok_s: float = Field(description="Prompt tokens/s, all replicas.")
    requests_per_s: float = Field(description="Requests/s served.")
    goodput_rps: float = Field(description="Requests/s that meet every SLO target.")
    slo_attainment: float = Field(description="Share of requests meeting every SLO target.")
    tok_s_per_gpu: float = Field(description="Output tokens/s per GPU.")
    cost_per_1m_tokens: float = Field(description="USD per 1M output tokens at this throughput.")
    concurrency: float = Field(description="Mean requests in service per replica.")
    saturated: bool = Field(description="Offered load exceeds what the deployment can serve.")
    decode_step_ms: float = Field(description="Decode step time at the operating batch.")
    burst_ttft_ms: Percentiles | None = Field(default=None, description="Closed loop: TTFT of the first wave "
                                              "(every client's first request at once), apart from the steady "
                                              "state the other figures describe.")
    max_rps: float = Field(description="Most requests/s the deployment serves (all replicas) whatever the "
                           "latency: an overloaded open loop's served rate levels off here.")
    capacity_rps: float | None = Field(default=None, description="Capacity at the SLO: the highest arrival rate "
                                       "(all replicas, the traffic's own arrival process and lengths) at which "
                                       "every SLO percentile still holds; None where not computed.")
    capacity_tok_s_per_gpu: float | None = Field(default=None, description="Output tokens/s per GPU at "
                                                 "capacity_rps.")
    cost_per_1m_tokens_at_capacity: float | None = Field(default=None, description="USD per 1M output tokens "
                                                         "when serving capacity_rps.")
    light_load_ms: dict[str, float] | None = Field(default=None, description="Where no arrival rate meets the "
                                                   "SLO: each missed latency target's value at a light load (1/1000 "
                                                   "of capacity), e.g. {'ttft_p99': 620.0}: the least the SLO would "
                                                   "have to allow for this configuration.")
    sources: dict[str, str] = Field(default_factory=dict, description="Where each term came from.")


class Estimate(_Frozen):
    """One scored candidate."""

    config: Candidate = Field(description="The candidate.")
    memory: MemoryBreakdown = Field(description="Its per-GPU memory.")
    predictions: Predictions | None = Field(default=None, description="What users would see (None when it does not fit).")
    violations: tuple[str, ...] = Field(default=(), description="SLO targets (or the memory reason) it misses.")
    quality_cost: float = Field(default=0.0, description="Stated perplexity cost of its precision, %.")
    score: float = Field(default=0.0, description="The objective's value (higher is better).")

    @property
    def meets_slo(self) -> bool:
        return self.memory.fits and self.predictions is not None and not self.violations


class SearchStats(_Frozen):
    sampler: str = Field(description="Sampler that ran (grid, staged, tpe, nsga2, random).")
    space_size: int = Field(description="Discrete candidates in the space.")
    memory_feasible: int = Field(description="Candidates that fit in memory.")
    trials: int = Field(description="Candidates the study evaluated.")
    examined_fraction: float = Field(description="trials / memory_feasible.")
    seconds: float = Field(description="Wall time of the search.")
    study_name: str = Field(default="", description="Optuna study name.")
    storage: str | None = Field(default=None, description="Optuna storage URL, if persisted.")


class Plan(_Frozen):
    """The planner's answer: the request, the ranked candidates, and why the winner won."""

    request: PlanRequest = Field(description="The question answered.")
    ranked: tuple[Estimate, ...] = Field(description="Best first; SLO-meeting candidates before others.")
    pareto: tuple[Estimate, ...] = Field(default=(), description="Pareto front (search.pareto).")
    why: str = Field(default="", description="Why the winner won, one sentence.")
    profile: dict = Field(default_factory=dict, description="The hardware profile and calibration used.")
    stats: SearchStats = Field(description="How the search went.")

    @property
    def winner(self) -> Estimate:
        return self.ranked[0]

    def to_yaml(self) -> str:
        doc = self.model_dump(mode="json")
        doc["winner"] = doc["ranked"][0] if doc["ranked"] else None
        return yaml.safe_dump(doc, sort_keys=False)


def load_plan(path: str | Path) -> Plan:
    """Read a plan.yaml (or the folder holding one) written by `plan`."""
    from pydantic import ValidationError

    from serveplan.errors import ConfigError, validation_sentence
    from serveplan.fileio import read_document

    p = Path(path)
    if p.is_dir():
        p = p / "plan.yaml"
    elif not p.exists() and p.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"Plan folder '{p}' does not exist; give the folder `plan -o` wrote.")
    doc = read_document(p, "plan")
    doc.pop("winner", None)
    try:
        return Plan.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(f"'{p}' is not a plan written by this serveplan: "
                          f"{validation_sentence(e).removeprefix('Invalid configuration: ')} Re-run `plan -o`.") from None
