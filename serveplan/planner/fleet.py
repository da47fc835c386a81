"""Fleets: several models, each with its traffic and SLO, on a mixed GPU inventory (`plan fleet fleet.yaml`).

Two stages. First the options: for each model x pool x GPU allotment (powers of two up to a node, then whole
nodes) the existing planner (`api.plan`) picks its best configuration and that configuration's capacity at the
SLO; one option is then "replicas of that configuration's single replica", carrying capacity_rps / replicas each
(the planner's own Sizing arithmetic: replicas behind a load balancer split a Poisson stream). Planner calls are
cached per (model, GPU type, GPU count) and run with a small trial budget (FleetSpec.n_trials).

Then the assignment, an integer linear program solved by HiGHS through `scipy.optimize.milp`:

    variables   y_o in {0,1} (model m uses option o), k_o in {0..U_o} (replicas of o)
    subject to  sum_{o of m} y_o = 1;  y_o <= k_o <= U_o y_o;  sum_{o of m} cap_o k_o >= rate_m  (every SLO met;
                rate_m is the offered rate x (1 + search.headroom), as `plan` sizes replicas)
                sum_{o on pool p} gpus_o k_o <= G_p  (no pool over-assigned)
    objective   min sum_o price_o gpus_o k_o  ($/hour); with a budget: cost <= budget and max t such that
                sum_{o of m} cap_o k_o >= t rate_m for every m (the smallest capacity/offered ratio, 1 + headroom)

A fleet that cannot fit is one sentence: the model no pool can serve within its SLO, or, from the same program
with an integer slack of extra GPUs per pool (cheapest extension), how many more GPUs of which pool would fit it,
or the cheapest cost when it is above the budget.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, model_validator

from serveplan.errors import ConfigError, DoesNotFit, ServeplanError
from serveplan.planner import catalog, decision
from serveplan.planner.report import idle_miss_phrase
from serveplan.planner.result import Estimate, Plan
from serveplan.planner.spec import Candidate, Frozen, GPUSpec, PlanRequest

DEFAULT_FLEET_TRIALS = 48  # planner trials per (model, GPU type, count): ~0.3-1 s a call on one core
HEADROOM_TIE = 1e-4  # with a budget: cost breaks ties between equal headrooms, at this weight per $/hour


# ---------------------------------------------------------------------------------------------- spec
class FleetModel(Frozen):
    """One model of the fleet and what it must serve."""

    model: str = Field(description="Catalog name or alias (llama-3.1-8b), or a path to a HF config.json / folder.")
    name: str | None = Field(default=None, description="Label in tables and folder names (default: the model).")
    traffic: str | dict[str, Any] = Field(default="chat", description="A traffic preset or YAML file, or inline "
                                          "fields (rate_rps, input_len, ...), with `preset:` the preset they "
                                          "change (default chat).")
    slo: str | dict[str, Any] = Field(default="default", description="An SLO preset (default, interactive, "
                                      "relaxed) or inline targets (ttft_p99_ms: 800, ...), which replace it.")
    objective: Literal["goodput_per_gpu", "cost", "latency"] | None = Field(
        default=None, description="The planner's objective for this model's configurations (default "
        "goodput_per_gpu).")
    overrides: tuple[str, ...] = Field(default=(), description="Further planner overrides for this model "
                                       "(search.allowed_quant=[bf16,fp8], engine.version=0.26.0, ...).")

    def label(self) -> str:
        if self.name:
            return self.name
        if catalog.looks_like_path(self.model):
            p = Path(self.model)
            return (p.parent.name if p.suffix == ".json" else p.name) or self.model
        return self.model


class FleetSpec(Frozen):
    """A fleet: models with their traffic and SLOs, the GPU pools they share, and an optional budget."""

    models: tuple[FleetModel, ...] = Field(min_length=1, description="The models to serve.")
    inventory: tuple[str, ...] = Field(min_length=1, description="GPU pools as --gpus writes them "
                                       "(COUNTxGPU or NODESxCOUNTxGPU): [8xH100, 4xL40S].")
    budget_usd_per_hour: float | None = Field(default=None, gt=0, description="Most the fleet may cost per "
                                              "hour; with it the assignment maximizes the smallest headroom.")
    engine: str | None = Field(default=None, description="Engine for every model (default vllm).")
    n_trials: int = Field(default=DEFAULT_FLEET_TRIALS, ge=1, le=100_000, description="Planner trials per "
                          "(model, GPU type, count).")

    @model_validator(mode="after")
    def _unique_labels(self) -> "FleetSpec":
        labels = [m.label() for m in self.models]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"two models share the name {dup[0]}; give each a distinct `name:`")
        return self


class Pool(Frozen):
    """One pool of the inventory, resolved."""

    text: str = Field(description="As written in the fleet file.")
    gpu: GPUSpec = Field(description="Its GPU type.")
    option: str = Field(description="Catalog hardware option.")
    nodes: int = Field(ge=1, description="Machines.")
    gpus_per_node: int = Field(ge=1, description="GPUs in each machine.")

    @property
    def total(self) -> int:
        return self.nodes * self.gpus_per_node

    def allotments(self) -> list[int]:
        """Powers of two up to a node, then whole nodes."""
        out = [n for n in (1, 2, 4, 8, 16) if n <= self.gpus_per_node]
        if self.gpus_per_node not in out:
            out.append(self.gpus_per_node)
        return out + [k * self.gpus_per_node for k in range(2, self.nodes + 1)]

    def gpus_arg(self, n: int) -> str:
        """--gpus for n GPUs of this pool (whole nodes beyond one)."""
        if n <= self.gpus_per_node:
            return f"{n}x{self.option}"
        return f"{math.ceil(n / self.gpus_per_node)}x{self.gpus_per_node}x{self.option}"


def resolve_pools(spec: FleetSpec) -> list[Pool]:
    pools = []
    for text in spec.inventory:
        option, nodes, per = catalog.parse_gpus(text)
        pools.append(Pool(text=text, gpu=catalog.gpu_spec(option), option=option, nodes=nodes, gpus_per_node=per))
    return pools


def load_fleet(path: str | Path) -> FleetSpec:
    from pydantic import ValidationError

    from serveplan.errors import validation_sentence
    from serveplan.fileio import read_document

    doc = read_document(path, "fleet file")
    try:
        return FleetSpec.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(validation_sentence(e, "fleet")) from None


def _flat(prefix: str, doc: dict[str, Any]) -> list[str]:
    import json

    out = []
    for k, v in doc.items():
        if isinstance(v, dict):
            out += _flat(f"{prefix}.{k}", v)
        else:
            out.append(f"{prefix}.{k}={'null' if v is None else json.dumps(v) if isinstance(v, (list, str)) else v}")
    return out


def model_request_args(m: FleetModel, n_trials: int) -> tuple[str, list[str]]:
    """(traffic preset or file, overrides) for build_request: the model's traffic, SLO, objective and trials."""
    ovs = [f"search.n_trials={n_trials}", "search.top_k=3"]
    if isinstance(m.traffic, str):
        traffic = m.traffic
    else:
        fields = dict(m.traffic)
        traffic = str(fields.pop("preset", "chat"))
        fields.setdefault("name", f"{m.label()}-traffic" if "preset" not in m.traffic else traffic)
        ovs += _flat("traffic", fields)
    if isinstance(m.slo, str):
        ovs.append(f"slo={m.slo}")
    else:
        ovs += ["slo=none"] + _flat("slo", m.slo)
    if m.objective:
        ovs.append(f"search.objective={m.objective}")
    return traffic, ovs + list(m.overrides)


# ---------------------------------------------------------------------------------------------- options
class Option(Frozen):
    """One way to serve a model: replicas of one configuration on one pool."""

    model: int = Field(description="Index into FleetSpec.models.")
    pool: int = Field(description="Index into the pools.")
    gpus_per_replica: int = Field(ge=1, description="GPUs one replica takes.")
    capacity_rps: float = Field(ge=0, description="Requests/s one replica carries within the SLO.")
    price_per_gpu_hour: float = Field(gt=0, description="USD per GPU-hour of the pool's GPU.")
    estimate: Estimate | None = Field(default=None, description="The configuration (one replica) and its scores.")
    plan: Plan | None = Field(default=None, description="The plan it came from.")

    @property
    def cost_per_replica(self) -> float:
        return self.gpus_per_replica * self.price_per_gpu_hour


Planner = Callable[[PlanRequest], Plan]


def model_options(spec: FleetSpec, pools: list[Pool], planner: Planner | None = None,
                  cache: dict | None = None) -> tuple[list[PlanRequest], list[Option], dict[int, str]]:
    """The base request of every model (at its first pool), its options, and for a model with none the reason
    (the last planner sentence). One planner call per (model, GPU type, GPU count)."""
    from serveplan.planner.api import plan as default_planner
    from serveplan.planner.config import build_request

    planner = planner or default_planner
    cache = {} if cache is None else cache
    base: list[PlanRequest] = []
    options: list[Option] = []
    why_none: dict[int, str] = {}
    for i, m in enumerate(spec.models):
        traffic, ovs = model_request_args(m, spec.n_trials)
        best: dict[tuple[int, int], Option] = {}
        for j, pool in enumerate(pools):
            for n in pool.allotments():
                key = (i, pool.option, pool.gpus_arg(n))
                if key not in cache:
                    req = build_request(model=m.model, gpus=pool.gpus_arg(n), traffic=traffic, engine=spec.engine,
                                        overrides=ovs)
                    if req.traffic.is_closed_loop:
                        raise ConfigError(f"Model {m.label()}'s traffic is a closed loop ({req.traffic.concurrency} "
                                          f"clients); a fleet is sized by arrival rate: give its traffic rate_rps.")
                    try:
                        cache[key] = (req, planner(req))
                    except DoesNotFit as e:
                        cache[key] = (req, str(e))
                req, result = cache[key]
                if len(base) == i:
                    base.append(req)
                if isinstance(result, str):
                    why_none[i] = f"on {n}x{pool.gpu.display_name}: {result.rstrip('.')}"
                    continue
                w = result.winner
                p = w.predictions
                if p is None or not p.capacity_rps or not w.memory.fits:
                    why_none.setdefault(i, f"on {n}x{pool.gpu.display_name} the best configuration "
                                        f"({w.config.label()}) {idle_miss_phrase(p, req.slo)}")
                    continue
                opt = Option(model=i, pool=j, gpus_per_replica=w.config.gpus_per_replica,
                             capacity_rps=p.capacity_rps / w.config.replicas, price_per_gpu_hour=pool.gpu.price_per_hour_usd,
                             estimate=w, plan=result)
                k = (j, opt.gpus_per_replica)
                if k not in best or opt.capacity_rps > best[k].capacity_rps:
                    best[k] = opt
        options += best.values()
        if any(o.model == i for o in options):
            why_none.pop(i, None)
    return base, options, why_none


# ---------------------------------------------------------------------------------------------- assignment
class Choice(Frozen):
    option: Option
    replicas: int = Field(ge=1)


class Solution(Frozen):
    choices: tuple[Choice, ...] = Field(description="One per model, in the spec's order.")
    cost_per_hour: float = Field(description="USD per hour of the GPUs assigned.")
    extra_gpus: tuple[int, ...] = Field(default=(), description="Relaxed solve: GPUs added per pool.")


def solve(rates: list[float], pool_gpus: list[int], options: list[Option], *, budget: float | None = None,
          relax: bool = False) -> Solution | None:
    """The integer program of the module docstring; None when infeasible. relax: each pool may grow by an integer
    slack, and the cheapest slack (in $/hour) is minimized instead of the cost."""
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    n_o, n_p, n_m = len(options), len(pool_gpus), len(rates)
    if any(not any(o.model == m for o in options) for m in range(n_m)):
        return None
    # x = [y_0..y_{n_o-1}, k_0..k_{n_o-1}, t, s_0..s_{n_p-1}]
    n = 2 * n_o + 1 + n_p
    Y, K, T, S = 0, n_o, 2 * n_o, 2 * n_o + 1
    ub = []
    for o in options:
        need = math.ceil(rates[o.model] / o.capacity_rps) if o.capacity_rps > 0 else 0
        ub.append(max(need, pool_gpus[o.pool] // o.gpus_per_replica) if relax else
                  pool_gpus[o.pool] // o.gpus_per_replica)
    rows, lo, hi = [], [], []

    def row(coefs: dict[int, float], low: float, high: float) -> None:
        r = np.zeros(n)
        for idx, v in coefs.items():
            r[idx] += v
        rows.append(r)
        lo.append(low)
        hi.append(high)

    for m in range(n_m):
        mine = [i for i, o in enumerate(options) if o.model == m]
        row({Y + i: 1 for i in mine}, 1, 1)
        row({K + i: options[i].capacity_rps for i in mine}, rates[m], np.inf)
        if budget is not None:
            row({**{K + i: options[i].capacity_rps for i in mine}, T: -rates[m]}, 0, np.inf)
    for i in range(n_o):
        row({K + i: 1, Y + i: -ub[i]}, -np.inf, 0)
        row({K + i: 1, Y + i: -1}, 0, np.inf)
    for p in range(n_p):
        coefs: dict[int, float] = {K + i: o.gpus_per_replica for i, o in enumerate(options) if o.pool == p}
        if relax:
            coefs[S + p] = -1
        row(coefs, -np.inf, pool_gpus[p])
    cost = {K + i: o.cost_per_replica for i, o in enumerate(options)}
    if budget is not None:
        row(cost, -np.inf, budget)
    c = np.zeros(n)
    if relax:
        for p in range(n_p):
            c[S + p] = min((o.price_per_gpu_hour for o in options if o.pool == p), default=1.0)
        for idx, v in cost.items():
            c[idx] = v * 1e-6  # among equal extensions, the cheaper fleet
    elif budget is not None:
        c[T] = -1
        for idx, v in cost.items():
            c[idx] = v * HEADROOM_TIE
    else:
        for idx, v in cost.items():
            c[idx] = v
    upper = np.array([1] * n_o + ub + [1e6 if budget is not None else 0] + [10_000 if relax else 0] * n_p, float)
    res = milp(c, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=np.array([1] * (2 * n_o) + [0] +
               [1] * n_p), bounds=Bounds(np.zeros(n), upper))
    if res.status != 0 or res.x is None:
        return None
    x = res.x
    choices = []
    for m in range(n_m):
        i = max((i for i, o in enumerate(options) if o.model == m), key=lambda i: x[Y + i])
        choices.append(Choice(option=options[i], replicas=int(round(x[K + i]))))
    total = sum(ch.option.cost_per_replica * ch.replicas for ch in choices)
    return Solution(choices=tuple(choices), cost_per_hour=total,
                    extra_gpus=tuple(int(round(x[S + p])) for p in range(n_p)) if relax else ())


def shortfall(spec: FleetSpec, pools: list[Pool], rates: list[float], options: list[Option],
              why_none: dict[int, str]) -> str:
    """One sentence naming what is short: a model no pool serves within its SLO, or the GPUs that would fit the
    fleet, or the budget."""
    labels = [m.label() for m in spec.models]
    for i in range(len(spec.models)):
        if not any(o.model == i for o in options):
            return (f"Model {labels[i]} cannot meet its SLO on any pool of {', '.join(p.text for p in pools)} "
                    f"({why_none.get(i, 'no configuration carries any load within it')}); relax its SLO or add a "
                    f"larger GPU.")
    relaxed = solve(rates, [p.total for p in pools], options, relax=True)
    if relaxed is None:  # cannot happen: every model has an option and the pools may grow without limit
        return "The fleet does not fit the inventory."
    short = [(e, p) for e, p in zip(relaxed.extra_gpus, pools) if e > 0]
    if short:
        what = " and ".join(f"{e} more {p.gpu.display_name} in pool {p.text} ({p.total + e} in all)"
                            for e, p in short)
        return f"The fleet does not fit its inventory: it needs {what} for every model to meet its SLO."
    cheapest = solve(rates, [p.total for p in pools], options)
    cost = cheapest.cost_per_hour if cheapest else relaxed.cost_per_hour
    return (f"The cheapest assignment that meets every SLO costs ${cost:,.2f}/hour, above the budget of "
            f"${spec.budget_usd_per_hour:,.2f}/hour; raise budget_usd_per_hour by ${cost - (spec.budget_usd_per_hour or 0):,.2f}.")


class FleetInfeasible(ServeplanError):
    """The fleet cannot be assigned: one sentence names what is short."""


# ---------------------------------------------------------------------------------------------- result
class Allocation(Frozen):
    """What one model gets."""

    label: str
    pool: str = Field(description="The pool, as written.")
    gpu: str = Field(description="GPU display name.")
    gpus_per_replica: int
    replicas: int = Field(description="Replicas assigned (at least those the offered load needs).")
    replicas_needed: int = Field(description="ceil(offered x (1 + search.headroom) / capacity per replica).")
    replicas_max: int = Field(description="What the pool allows: these plus the pool's leftover GPUs.")
    offered_rps: float
    capacity_rps_per_replica: float
    cost_per_hour: float
    cost_per_1m_tokens: float | None = Field(description="USD per 1M output tokens at the offered load.")
    plan: Plan = Field(description="The assigned configuration with `replicas` replicas, scored at the offered "
                       "load (its folder's plan.yaml).")
    queue_threshold: int = Field(description="Waiting requests per replica to scale out at (autoscaling).")
    prefill_tok_s: float = Field(description="Predicted prefill tokens/s of one replica.")


class FleetPlan(Frozen):
    spec: FleetSpec
    allocations: tuple[Allocation, ...]
    leftover: dict[str, int] = Field(description="Pool -> GPUs not assigned.")
    cost_per_hour: float
    min_headroom: float = Field(description="Smallest (capacity / offered - 1) over the models.")
    seconds: float
    planner_calls: int


def queue_threshold(req: PlanRequest, cand: Candidate) -> tuple[int, float]:
    """(waiting requests per replica at which to scale out, predicted prefill tokens/s of one replica).

    A request that arrives behind Q waiting requests starts its first token only after their prompts are
    prefilled: with prompts of the traffic's mean length L and a replica prefilling P tokens/s, after Q L / P
    seconds. Q_max = T P / L is the queue at which that wait alone reaches the TTFT target T (the limit of the
    highest percentile the SLO sets for TTFT). P is the planner's step model for one prefill-only step of
    max_num_batched_tokens prompt tokens (the fastest this replica prefills, as vLLM's --max-num-queued-tokens
    guard sizes it). The threshold is half of Q_max, at least 1: scaling starts while the queue still leaves half
    the target, since a new replica takes minutes to load its weights. Without a TTFT target any sustained queue
    means the replicas are full: 1."""
    from serveplan.planner.capacity import prefill_tokens_per_s, ttft_target_s

    prompt = max(1.0, min(req.traffic.input_len.mean, cand.max_model_len))
    prefill = prefill_tokens_per_s(req, cand.model_copy(update={"replicas": 1}))
    target_s = ttft_target_s(req.slo)
    if target_s is None:
        return 1, prefill
    return max(1, int(target_s * prefill / prompt / 2)), prefill


def _assigned_plan(base: Plan, opt: Option, pool: Pool, replicas: int, rate: float, why: str) -> Plan:
    """The chosen configuration with `replicas` replicas on the GPUs assigned, scored at the offered load."""
    from serveplan.planner.config import request_from_dict
    from serveplan.planner.estimate import Scorer

    assert opt.estimate is not None
    total = replicas * opt.gpus_per_replica
    nodes = math.ceil(total / pool.gpus_per_node)
    per = total if nodes == 1 else pool.gpus_per_node
    doc = {g: getattr(base.request, k).model_dump() for g, k in (("model", "model"), ("hardware", "inventory"),
           ("traffic", "traffic"), ("slo", "slo"), ("search", "search"), ("engine", "engine"))}
    doc["hardware"].update(nodes=nodes, gpus_per_node=per)
    req = request_from_dict(doc)
    cand = opt.estimate.config.model_copy(update={"replicas": replicas})
    scorer = Scorer(req)
    est = scorer.reported(cand, seed=req.search.seed)  # the sample a plan's finalists take
    assert est.predictions is not None
    preds = est.predictions.model_copy(update={"capacity_rps": opt.capacity_rps * replicas,
                                               "sources": {**est.predictions.sources,
                                                           "capacity": "fleet: replicas x one replica's capacity"}})
    est = est.model_copy(update={"predictions": preds})
    return Plan(request=req, ranked=(est,), pareto=(), why=why, profile=base.profile, stats=base.stats)


def plan_fleet(spec: FleetSpec, *, planner: Planner | None = None, cache: dict | None = None) -> FleetPlan:
    """Options from the planner, then the assignment; FleetInfeasible (one sentence) when it cannot fit."""
    import time

    t0 = time.perf_counter()
    cache = {} if cache is None else cache
    before = len(cache)
    pools = resolve_pools(spec)
    base, options, why_none = model_options(spec, pools, planner, cache)
    rates = [float(r.traffic.rate_rps or 0) for r in base]
    # Each model gets its offered rate plus the planner's own headroom (search.headroom) in capacity, as `plan`
    # sizes replicas: one L40S at 92% of its predicted capacity queued in its own simulation.
    needed = [decision.asked_rate(r) for r in base]
    sizes = [p.total for p in pools]
    sol = solve(needed, sizes, options)
    if sol is not None and spec.budget_usd_per_hour is not None:
        sol = solve(needed, sizes, options, budget=spec.budget_usd_per_hour) if \
            sol.cost_per_hour <= spec.budget_usd_per_hour + 1e-9 else None
    if sol is None:
        raise FleetInfeasible(shortfall(spec, pools, needed, options, why_none))
    used = [0] * len(pools)
    for ch in sol.choices:
        used[ch.option.pool] += ch.replicas * ch.option.gpus_per_replica
    leftover = [s - u for s, u in zip(sizes, used)]
    allocs = []
    for i, ch in enumerate(sol.choices):
        o, pool, rate = ch.option, pools[ch.option.pool], rates[i]
        assert o.plan is not None
        need = max(1, math.ceil(needed[i] / o.capacity_rps - 1e-9))
        why = (f"Fleet: {ch.replicas} x {o.gpus_per_replica} {pool.gpu.display_name} of pool {pool.text}, "
               f"{o.capacity_rps:.2f} req/s each within the SLO for {rate:g} offered.")
        plan = _assigned_plan(o.plan, o, pool, ch.replicas, rate, why)
        q, prefill = queue_threshold(plan.request, plan.winner.config)
        mean_out = plan.request.traffic.output_len.mean
        cost = ch.replicas * o.cost_per_replica
        allocs.append(Allocation(
            label=spec.models[i].label(), pool=pool.text, gpu=pool.gpu.display_name,
            gpus_per_replica=o.gpus_per_replica, replicas=ch.replicas, replicas_needed=need,
            replicas_max=ch.replicas + leftover[o.pool] // o.gpus_per_replica, offered_rps=rate,
            capacity_rps_per_replica=o.capacity_rps, cost_per_hour=cost,
            cost_per_1m_tokens=cost / (rate * mean_out * 3600) * 1e6 if rate > 0 else None,
            plan=plan, queue_threshold=q, prefill_tok_s=prefill))
    head = min(a.replicas * a.capacity_rps_per_replica / a.offered_rps - 1 for a in allocs if a.offered_rps > 0)
    return FleetPlan(spec=spec, allocations=tuple(allocs), leftover={p.text: lo for p, lo in zip(pools, leftover)},
                     cost_per_hour=sol.cost_per_hour, min_headroom=head, seconds=time.perf_counter() - t0,
                     planner_calls=len(cache) - before)


__all__ = ["FleetSpec", "FleetModel", "FleetPlan", "Allocation", "Option", "Pool", "FleetInfeasible", "load_fleet",
           "plan_fleet", "solve", "queue_threshold", "resolve_pools", "model_options"]
