"""The Optuna study over the candidate space.

Structures (layout x weight precision x KV dtype) whose weights cannot fit are pruned before the study
exists; the study proposes a structure and batching knobs, the memory model rejects what does not fit
before any estimate, and the SLOs are constraints (`Trial.set_constraint`). The sampler fits the space: a
feasible space no larger than the trial budget is examined whole (every feasible candidate recorded); a larger one in two
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
    space = _Space.of(req, scorer)
    s = req.search
    sampler_name, sampler, n_trials = _choose_sampler(optuna, s, len(space.feasible))
    name = study_name(req)
    study = _Study(optuna, req, scorer, space, _create_study(optuna, req, sampler, name))
    if sampler_name == "grid":
        order = list(space.feasible)
        random.Random(s.seed).shuffle(order)
        study.record(order)
    elif sampler_name == "staged":
        _staged(study, space, s.n_trials)
    else:
        study.run(max(0, n_trials - len(study.seen)))
    pareto: list[Estimate] = []
    if s.pareto:  # NSGA-II re-samples configurations, and many tie on both objectives: one entry per point
        best: dict[tuple, Estimate] = {}
        for t in study.study.best_trials:
            est = study.evaluated.get((t.params["structure"], t.params["batching"]))
            if est is None or est.predictions is None:
                continue
            point = tuple(round(v, 3) for v in t.values)
            if point not in best or est.score > best[point].score:
                best[point] = est
        pareto = list(best.values())
    stats = SearchStats(
        sampler=sampler_name, space_size=space.size, memory_feasible=len(space.feasible),
        trials=len(study.evaluated), examined_fraction=min(1.0, len(study.evaluated) / len(space.feasible)),
        seconds=time.perf_counter() - t0, study_name=name, storage=s.storage,
    )
    return list(study.evaluated.values()), pareto, stats


class _Space:
    """The structures (layout x precisions) and batching options, keyed for Optuna's categorical
    parameters, and every (structure, batching) pair whose memory fits: the rest never become trials."""

    def __init__(self, by_key: dict, bkeys: dict, feasible: list[tuple[str, str]], size: int):
        self.by_key, self.bkeys, self.feasible, self.size = by_key, bkeys, feasible, size

    @classmethod
    def of(cls, req: PlanRequest, scorer: Scorer) -> "_Space":
        all_structs = structures(req)
        if not all_structs:
            raise ConfigError(empty_space_reason(req))
        batching = batching_options(req)
        # Weights alone decide most infeasibility: drop those structures before the study sees them.
        structs = [st for st in all_structs if scorer.weights_fit(st)]
        if not structs:
            raise DoesNotFit(scorer.explain_nothing_fits(all_structs))
        bkeys = {f"{a}/{b}/{'c' if c else 'n'}": (a, b, c) for a, b, c in batching}
        feasible = [(st.key, bkey) for st in structs for bkey, (a, b, c) in bkeys.items()
                    if scorer.memory(make_candidate(req, st, a, b, c)).fits]
        if not feasible:
            raise DoesNotFit(scorer.explain_nothing_fits(all_structs))
        return cls({st.key: st for st in structs}, bkeys, feasible, len(all_structs) * len(batching))

    def candidate(self, req: PlanRequest, skey: str, bkey: str):  # noqa: ANN201 (a Candidate)
        return make_candidate(req, self.by_key[skey], *self.bkeys[bkey])


def _choose_sampler(optuna, s, n_feasible: int):  # noqa: ANN001, ANN202
    """(name, Optuna sampler, trials to ask) for the search settings and the feasible space's size."""
    name = s.sampler
    if name == "auto":
        name = "grid" if n_feasible <= s.n_trials else ("nsga2" if s.pareto else "staged")
    if name in ("grid", "staged"):
        # Candidates recorded as trials (all of them for grid, two stages for staged; _Study.record), in a seeded
        # order; the sampler is never asked. (Optuna's GridSampler walks the full product, infeasible points
        # included, at a cost quadratic in the trials.)
        return name, optuna.samplers.RandomSampler(seed=s.seed), n_feasible
    if name == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=s.seed)
    elif name == "random":
        sampler = optuna.samplers.RandomSampler(seed=s.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=min(60, max(10, s.n_trials // 5)),
                                             multivariate=True)
    return name, sampler, min(s.n_trials, n_feasible)


class _Study:
    """An Optuna study over the space with the scorer's estimates cached by (structure, batching). A resumed
    study already holds trials: their candidates are re-scored (cheaply, no new trials) so the plan ranks
    them too, and the exhaustive order skips them; a sampler that proposes a stored candidate again is told
    the cached score, not estimated twice."""

    def __init__(self, optuna, req: PlanRequest, scorer: Scorer, space: _Space, study):  # noqa: ANN001
        self.optuna, self.req, self.scorer, self.space, self.study = optuna, req, scorer, space, study
        self.evaluated: dict[tuple[str, str], Estimate] = {}
        self.seen = {(t.params.get("structure"), t.params.get("batching"))
                     for t in study.trials if t.state.is_finished()} if req.search.storage else set()
        for skey, bkey in self.seen:
            if skey in space.by_key and bkey in space.bkeys:
                self.evaluated[(skey, bkey)] = scorer.score(space.candidate(req, skey, bkey))
        self.dist = {"structure": optuna.distributions.CategoricalDistribution(list(space.by_key)),
                     "batching": optuna.distributions.CategoricalDistribution(list(space.bkeys))}

    def _estimate(self, key: tuple[str, str]) -> Estimate:
        """The estimate of a (structure, batching) pair, scored once."""
        est = self.evaluated.get(key)
        if est is None:
            est = self.evaluated[key] = self.scorer.score(self.space.candidate(self.req, *key))
        return est

    def _outcome(self, est: Estimate) -> tuple[list[float] | None, dict[str, float]]:
        """What the study records of an estimate: its objective values and SLO constraints; for one that does not
        fit (rejected by the memory model, no estimate made), no values and an infeasible memory constraint."""
        if est.predictions is None:
            return None, {"memory": INFEASIBLE}
        return (list(_objective_values(self.req, est)),
                {f"c{i}": v for i, v in enumerate(self.scorer.constraint_values(est))})

    def run(self, n: int) -> None:
        """n trials the sampler proposes (TPE, NSGA-II, random)."""
        for _ in range(n):
            trial = self.study.ask(self.dist)
            values, constraints = self._outcome(self._estimate((trial.params["structure"],
                                                                 trial.params["batching"])))
            for name, v in constraints.items():
                trial.set_constraint(name, v)
            if values is None:
                self.study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
            else:
                self.study.tell(trial, values)

    def record(self, pairs: list[tuple[str, str]]) -> None:
        """Score the given candidates and add them to the study as finished trials in one call (Study.add_trials,
        recorded as `run` tells them). A grid or a stage has nothing to sample, and asking for enqueued trials
        one at a time makes Optuna scan every trial per ask: ~0.3 s of the README's 704."""
        state = self.optuna.trial.TrialState
        trials = []
        for key in pairs:
            if key in self.seen or key in self.evaluated:
                continue
            values, constraints = self._outcome(self._estimate(key))
            trials.append(self.optuna.trial.create_trial(
                state=state.PRUNED if values is None else state.COMPLETE, values=values,
                params={"structure": key[0], "batching": key[1]}, distributions=self.dist, constraints=constraints))
        self.study.add_trials(trials)


def _staged(study: _Study, space: _Space, n_trials: int) -> None:
    """Too many candidates to examine whole: every structure (layout x precisions) once, at the batching
    closest to the engine's defaults, then every batching of the leading structures."""
    from serveplan.planner.estimate import rank

    bkeys = space.bkeys
    by_struct: dict[str, list[str]] = {}
    for skey, bkey in space.feasible:
        by_struct.setdefault(skey, []).append(bkey)
    pref = sorted(bkeys, key=lambda b: (not bkeys[b][2], abs(bkeys[b][0] - 256), abs(bkeys[b][1] - 8192)))
    rank_of = {b: i for i, b in enumerate(pref)}
    first = [(sk, min(bs, key=rank_of.__getitem__)) for sk, bs in by_struct.items()]
    study.record(first)
    key_of = {id(v): k[0] for k, v in study.evaluated.items()}
    leaders = list(dict.fromkeys(key_of[id(e)] for e in rank(list(study.evaluated.values()))))
    room = max(0, n_trials - len(first))
    per = max(1, len(bkeys))
    top = leaders[:max(4, room // per)]
    study.record([(sk, bk) for sk in top for bk in by_struct.get(sk, [])])


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
        valid = [t for t in (1, 2, 4, 8, 16) if t <= inv.gpus_per_node and m.shards_at(t)]
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
