"""The Optuna study over the candidate space.

Structures (layout x weight precision x KV dtype) whose weights cannot fit are pruned before the study
exists; the study proposes a structure and batching knobs, the memory model rejects what does not fit
before any estimate, and the SLOs are constraints (`Trial.set_constraint`). The sampler fits the space: a
feasible space no larger than the trial budget is examined whole (every feasible candidate enqueued); a larger one in two
stages (every layout x precision at default batching, then every batching of the leaders), or with TPE
(`search.sampler=tpe`) or NSGA-II (Pareto front of throughput per GPU vs latency). A seeded sampler
makes the same request give the same plan. The top candidates are then re-scored by the step-level
simulation, which is what the plan reports.
"""

from __future__ import annotations

import hashlib
import random
import time

from serveplan.errors import ConfigError, DoesNotFit
from serveplan.planner.estimate import Scorer
from serveplan.planner.result import Estimate, SearchStats
from serveplan.planner.space import batching_options, make_candidate, structures
from serveplan.planner.spec import PlanRequest

INFEASIBLE = 1e6


def _objective_values(req: PlanRequest, est: Estimate) -> tuple[float, ...]:
    p = est.predictions
    assert p is not None
    lat = p.e2e_ms.at(req.slo.headline_percentile)
    if req.search.pareto:
        return (p.tok_s_per_gpu, lat)
    return (est.score,)


def _directions(req: PlanRequest) -> list[str]:
    return ["maximize", "minimize"] if req.search.pareto else ["maximize"]


def study_name(req: PlanRequest) -> str:
    if req.search.study_name:
        return req.search.study_name
    digest = hashlib.sha1(req.model_dump_json().encode()).hexdigest()[:10]
    return f"serveplan-{req.model.name}-{req.inventory.gpu.name}-{digest}"


def run_search(req: PlanRequest, scorer: Scorer) -> tuple[list[Estimate], list[Estimate], SearchStats]:
    """Returns (every evaluated estimate, the Pareto front if asked, stats)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    all_structs = structures(req)
    if not all_structs:
        raise ConfigError(empty_space_reason(req))
    batching = batching_options(req)
    # Weights alone decide most infeasibility: drop those structures before the study sees them.
    structs = [s for s in all_structs if scorer.weights_fit(s)]
    space_size = len(all_structs) * len(batching)
    if not structs:
        raise DoesNotFit(scorer.explain_nothing_fits(all_structs))
    by_key = {s.key: s for s in structs}
    bkeys = {f"{a}/{b}/{'c' if c else 'n'}": (a, b, c) for a, b, c in batching}

    s = req.search
    # Every candidate whose memory fits; the rest never become trials.
    feasible: list[tuple[str, str]] = []
    for st in structs:
        for bkey, (a, b, c) in bkeys.items():
            if scorer.memory(make_candidate(req, st, a, b, c)).fits:
                feasible.append((st.key, bkey))
    if not feasible:
        raise DoesNotFit(scorer.explain_nothing_fits(all_structs))
    sampler_name = s.sampler
    if sampler_name == "auto":
        sampler_name = "grid" if len(feasible) <= s.n_trials else ("nsga2" if s.pareto else "staged")
    if sampler_name in ("grid", "staged"):
        # Enqueued candidates (all of them for grid, two stages for staged), in a seeded order. (Optuna's
        # GridSampler walks the full product, infeasible points included, at a cost quadratic in the trials.)
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
        n_trials = len(feasible)
    elif sampler_name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=s.seed)
        n_trials = min(s.n_trials, len(feasible))
    elif sampler_name == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
        n_trials = min(s.n_trials, len(feasible))
    else:
        sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=min(60, max(10, s.n_trials // 5)),
                                             multivariate=True)
        n_trials = min(s.n_trials, len(feasible))

    name = study_name(req)
    study = _create_study(optuna, req, sampler, name)
    evaluated: dict[tuple[str, str], Estimate] = {}
    # A resumed study already holds trials: their candidates are re-scored (cheaply, no new trials) so the
    # plan ranks them too, and the exhaustive order skips them. A TPE/NSGA-II sampler may still propose a
    # stored candidate again; it is then told the cached score, not estimated twice.
    seen = {(t.params.get("structure"), t.params.get("batching"))
            for t in study.trials if t.state.is_finished()} if s.storage else set()
    for skey, bkey in seen:
        if skey in by_key and bkey in bkeys:
            evaluated[(skey, bkey)] = scorer.score(make_candidate(req, by_key[skey], *bkeys[bkey]))
    dist = {"structure": optuna.distributions.CategoricalDistribution(list(by_key)),
            "batching": optuna.distributions.CategoricalDistribution(list(bkeys))}

    def run(n: int) -> None:
        for _ in range(n):
            trial = study.ask(dist)
            skey, bkey = trial.params["structure"], trial.params["batching"]
            if (skey, bkey) in evaluated:
                est = evaluated[(skey, bkey)]
            else:
                seqs, toks, chunked = bkeys[bkey]
                est = scorer.score(make_candidate(req, by_key[skey], seqs, toks, chunked))
                evaluated[(skey, bkey)] = est
            if est.predictions is None:  # does not fit: rejected by the memory model, no estimate made
                trial.set_constraint("memory", INFEASIBLE)
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            for i, v in enumerate(scorer.constraint_values(est)):
                trial.set_constraint(f"c{i}", v)
            study.tell(trial, list(_objective_values(req, est)))

    def enqueue(pairs: list[tuple[str, str]]) -> int:
        todo = [f for f in pairs if f not in seen and f not in evaluated]
        for skey, bkey in todo:
            study.enqueue_trial({"structure": skey, "batching": bkey})
        return len(todo)

    if sampler_name == "grid":
        order = list(feasible)
        random.Random(s.seed).shuffle(order)
        run(enqueue(order))
    elif sampler_name == "staged":
        # Too many candidates to examine whole: every structure (layout x precisions) once, at the
        # batching closest to the engine's defaults, then every batching of the leading structures.
        by_struct: dict[str, list[str]] = {}
        for skey, bkey in feasible:
            by_struct.setdefault(skey, []).append(bkey)
        pref = sorted(bkeys, key=lambda b: (not bkeys[b][2], abs(bkeys[b][0] - 256), abs(bkeys[b][1] - 8192)))
        rank_of = {b: i for i, b in enumerate(pref)}
        first = [(sk, min(bs, key=rank_of.__getitem__)) for sk, bs in by_struct.items()]
        run(enqueue(first))
        from serveplan.planner.estimate import rank

        key_of = {id(v): k[0] for k, v in evaluated.items()}
        leaders = list(dict.fromkeys(key_of[id(e)] for e in rank(list(evaluated.values()))))
        room = max(0, s.n_trials - len(first))
        per = max(1, len(bkeys))
        top = leaders[:max(4, room // per)]
        run(enqueue([(sk, bk) for sk in top for bk in by_struct.get(sk, [])]))
    else:
        run(max(0, n_trials - len(seen)))
    pareto: list[Estimate] = []
    if s.pareto:
        for t in study.best_trials:
            key = (t.params["structure"], t.params["batching"])
            if key in evaluated:
                pareto.append(evaluated[key])
    seconds = time.perf_counter() - t0
    stats = SearchStats(
        sampler=sampler_name, space_size=space_size,
        memory_feasible=len(feasible),
        trials=len(evaluated), examined_fraction=min(1.0, len(evaluated) / len(feasible)),
        seconds=seconds, study_name=name, storage=s.storage,
    )
    return list(evaluated.values()), pareto, stats


def _create_study(optuna, req: PlanRequest, sampler, name: str):  # noqa: ANN001, ANN202
    """The Optuna study; a storage URL that cannot be opened is the user's to fix, in one sentence."""
    s = req.search
    try:
        return optuna.create_study(directions=_directions(req), sampler=sampler, storage=s.storage,
                                   study_name=name, load_if_exists=s.storage is not None)
    except ImportError as e:  # Optuna's "Failed to import DB access module", or the driver itself
        if not s.storage:
            raise
        driver = f" '{e.name}'" if getattr(e, "name", None) else ""
        raise ConfigError(f"search.storage={s.storage} needs a database driver{driver} that is not installed "
                          f"(e.g. psycopg2 for postgresql, pymysql for mysql); install it, or use "
                          f"sqlite:///study.db.") from None
    except Exception as e:  # noqa: BLE001 - narrowed below: only storage errors are the user's
        from sqlalchemy.exc import SQLAlchemyError

        if not s.storage or not isinstance(e, (SQLAlchemyError, ValueError)):
            raise
        first = str(e).strip().splitlines()[0][:160]
        raise ConfigError(f"Cannot open search.storage={s.storage} ({first}); give a URL Optuna can open, "
                          f"e.g. sqlite:///study.db in a folder you can write to.") from None


def empty_space_reason(req: PlanRequest) -> str:
    """Why no layout x precision exists before memory is even considered: the search restrictions."""
    from serveplan.planner.space import kv_dtypes, layouts, weight_dtypes

    m, inv, s = req.model, req.inventory, req.search
    if not layouts(req):
        valid = [t for t in (1, 2, 4, 8, 16) if t <= inv.gpus_per_node and not m.num_attention_heads % t
                 and ((t <= m.num_kv_heads and not m.num_kv_heads % t) or (t > m.num_kv_heads and not t % m.num_kv_heads))]
        what = []
        if s.tp:
            what.append(f"search.tp={list(s.tp)}")
        if s.pp:
            what.append(f"search.pp={list(s.pp)}")
        if s.use_all_gpus:
            what.append("search.use_all_gpus=true")
        return (f"No parallel layout of {m.name} on {inv.describe()} satisfies {' and '.join(what) or 'the inventory'}: "
                f"TP must divide the {m.num_attention_heads} attention and {m.num_kv_heads} KV heads and fit one "
                f"node (valid TP here: {', '.join(map(str, valid)) or 'none'}), and TP x PP x replicas must not "
                f"exceed {inv.total_gpus} GPUs.")
    if not weight_dtypes(req):
        return (f"No weight precision is left to search: search.allowed_quant={list(s.allowed_quant)} with "
                f"{req.engine.name} on {inv.gpu.display_name}"
                f"{f' and search.max_quality_cost={s.max_quality_cost:g}' if s.max_quality_cost is not None else ''}"
                f" leaves none that has a checkpoint and runs there.")
    if not kv_dtypes(req):
        return f"No KV-cache dtype is left: search.allowed_kv_dtype={list(s.allowed_kv_dtype)}."
    return "The search space is empty."
