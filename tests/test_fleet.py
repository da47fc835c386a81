"""Fleets (planner/fleet.py, `plan fleet`): the assignment's properties on hand-made options, the shortfall
sentence, a small real fleet end to end, and its autoscalers against the KEDA and Kubernetes schemas."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import yaml

from serveplan.planner.fleet import FleetSpec, Option, plan_fleet, resolve_pools, shortfall, solve

SCHEMAS = Path(__file__).parent / "data" / "schemas"


def opt(model: int, pool: int, gpus: int, cap: float, price: float = 1.0) -> Option:
    return Option(model=model, pool=pool, gpus_per_replica=gpus, capacity_rps=cap, price_per_gpu_hour=price)


def check(sol, rates, pools) -> None:
    """Every model gets one option whose replicas carry its rate; no pool is over-assigned."""
    used = [0] * len(pools)
    for m, ch in enumerate(sol.choices):
        assert ch.option.model == m and ch.replicas >= 1
        assert ch.replicas * ch.option.capacity_rps >= rates[m] - 1e-9
        used[ch.option.pool] += ch.replicas * ch.option.gpus_per_replica
    assert all(u <= p for u, p in zip(used, pools))


def test_picks_the_cheaper_of_two_feasible_options():
    # Model 0 can go on 2 expensive GPUs (pool 0) or 3 cheap ones (pool 1); both carry its 10 req/s.
    opts = [opt(0, 0, 2, 10.0, price=4.0), opt(0, 1, 1, 4.0, price=1.0)]
    sol = solve([10.0], [8, 4], opts)
    assert sol is not None and sol.choices[0].option.pool == 1 and sol.choices[0].replicas == 3
    assert sol.cost_per_hour == pytest.approx(3.0)
    # Dearer cheap GPUs flip the choice.
    opts[1] = opt(0, 1, 1, 4.0, price=3.0)
    sol = solve([10.0], [8, 4], opts)
    assert sol is not None and sol.choices[0].option.pool == 0 and sol.cost_per_hour == pytest.approx(8.0)


def test_shared_pool_is_never_over_assigned_and_more_gpus_never_cost_more():
    rng = random.Random(17)
    for _ in range(40):
        n_models, n_pools = rng.randint(1, 3), rng.randint(1, 2)
        opts = [opt(m, p, g, rng.uniform(0.5, 8) * g, price=[3.0, 1.0][p])
                for m in range(n_models) for p in range(n_pools) for g in (1, 2, 4) if rng.random() < 0.8]
        rates = [rng.uniform(0.5, 20) for _ in range(n_models)]
        pools = [rng.choice([2, 4, 8]) for _ in range(n_pools)]
        sol = solve(rates, pools, opts)
        if sol is not None:
            check(sol, rates, pools)
        for p in range(n_pools):
            bigger = list(pools)
            bigger[p] += rng.choice([1, 4, 8])
            sol2 = solve(rates, bigger, opts)
            if sol is not None:
                assert sol2 is not None and sol2.cost_per_hour <= sol.cost_per_hour + 1e-9
                check(sol2, rates, bigger)


def test_budget_maximizes_the_smallest_headroom():
    opts = [opt(0, 0, 1, 5.0), opt(1, 0, 1, 5.0)]
    rates = [5.0, 10.0]
    cheapest = solve(rates, [8], opts)
    assert cheapest is not None and [c.replicas for c in cheapest.choices] == [1, 2]
    sol = solve(rates, [8], opts, budget=6.0)
    assert sol is not None and sol.cost_per_hour <= 6.0
    assert [c.replicas for c in sol.choices] == [2, 4]  # headroom 100% each; 3+3 would leave model 1 at 50%


def test_shortfall_names_the_gpus_that_would_fit():
    spec = FleetSpec(models=[{"model": "llama-3.1-8b"}, {"model": "qwen2.5-7b"}], inventory=["2xH100", "1xL40S"])
    pools = resolve_pools(spec)
    opts = [opt(0, 0, 1, 2.0, price=3.0), opt(1, 0, 1, 2.0, price=3.0), opt(1, 1, 1, 1.0, price=1.0)]
    rates = [4.0, 4.0]
    assert solve(rates, [2, 1], opts) is None
    msg = shortfall(spec, pools, rates, opts, {})
    # Model 0 fills the H100s; model 1 needs 4 L40S ($4/hour, 3 more) or 2 more H100 ($6): the cheaper extension.
    assert msg.count(". ") == 0 and msg.endswith(".") and "3 more L40S-48GB in pool 1xL40S (4 in all)" in msg
    no_options = shortfall(spec, pools, rates, opts[:1], {1: "on 1xL40S: nothing fits"})
    assert no_options.startswith("Model qwen2.5-7b cannot meet its SLO on any pool") and "nothing fits" in no_options
    over = FleetSpec(models=spec.models, inventory=spec.inventory, budget_usd_per_hour=1.0)
    msg = shortfall(over, pools, [1.0, 1.0], opts, {})
    assert "above the budget" in msg


@pytest.fixture(scope="module")
def small_fleet():
    spec = FleetSpec(models=[{"model": "llama-3.1-8b", "traffic": {"preset": "chat", "rate_rps": 12}},
                             {"model": "qwen2.5-7b", "name": "code", "traffic": {"preset": "codegen", "rate_rps": 3},
                              "slo": {"ttft_p99_ms": 3000, "tpot_p99_ms": 120}}],
                     inventory=["2xH100", "2xL40S"], n_trials=12)
    return plan_fleet(spec)


def test_small_fleet_end_to_end(small_fleet):
    fp = small_fleet
    sizes = {"2xH100": 2, "2xL40S": 2}
    used = dict.fromkeys(sizes, 0)
    for a in fp.allocations:
        used[a.pool] += a.replicas * a.gpus_per_replica
        assert a.plan.winner.meets_slo, a.plan.winner.violations
        # sized as `plan` sizes: the offered rate with the search headroom on top
        assert a.replicas * a.capacity_rps_per_replica >= a.offered_rps * (1 + a.plan.request.search.headroom) - 1e-9
        assert 1 <= a.replicas_needed <= a.replicas <= a.replicas_max
        assert a.plan.winner.config.replicas == a.replicas
        assert a.queue_threshold >= 1 and a.prefill_tok_s > 0
    assert all(used[p] + fp.leftover[p] == sizes[p] for p in sizes)
    assert [a.label for a in fp.allocations] == ["llama-3.1-8b", "code"]
    assert fp.planner_calls == 8  # 2 models x (1, 2 GPUs) x 2 pools


def _strict(schema: dict) -> dict:
    """kubectl --validate=strict: an unknown field is an error (a CRD's structural schema would prune it)."""
    s = copy.deepcopy(schema)

    def walk(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                    and not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def test_autoscalers_validate_against_their_schemas(small_fleet):
    jsonschema = pytest.importorskip("jsonschema")
    from serveplan.render.targets.autoscale import autoscale_files

    keda = _strict(json.loads((SCHEMAS / "keda_scaledobject_v1alpha1.json").read_text())["schema"])
    hpa = json.loads((SCHEMAS / "k8s_hpa_autoscaling_v2.json").read_text())["schema"]
    for a in small_fleet.allocations:
        files = autoscale_files(a)
        so = yaml.safe_load(files["k8s/keda-scaledobject.yaml"])
        h = yaml.safe_load(files["k8s/hpa.yaml"])
        jsonschema.validate(so, keda)
        jsonschema.validate(h, hpa)
        assert so["apiVersion"] == "keda.sh/v1alpha1" and so["kind"] == "ScaledObject"
        assert h["apiVersion"] == "autoscaling/v2" and h["kind"] == "HorizontalPodAutoscaler"
        spec = so["spec"]
        assert a.replicas_needed == spec["minReplicaCount"] <= spec["maxReplicaCount"] == a.replicas_max
        assert h["spec"]["minReplicas"] == spec["minReplicaCount"] and h["spec"]["maxReplicas"] == a.replicas_max
        assert "vllm:num_requests_waiting" in spec["triggers"][0]["metadata"]["query"]
        assert spec["triggers"][0]["metadata"]["threshold"] == str(a.queue_threshold)
    # The validators do refuse: a typo'd field and a missing required one.
    bad = copy.deepcopy(so)
    bad["spec"]["minReplicas"] = 1
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, keda)
    bad = copy.deepcopy(h)
    del bad["spec"]["maxReplicas"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, hpa)


def test_cli_fleet_that_cannot_fit_is_one_sentence_exit_2(tmp_path, capsys):
    from serveplan.cli import main as cli_main

    f = tmp_path / "fleet.yaml"
    f.write_text(yaml.safe_dump({"models": [{"model": "llama-3.1-8b", "traffic": {"preset": "chat", "rate_rps": 400}}],
                                 "inventory": ["1xH100"], "n_trials": 8}))
    assert cli_main(["plan", "fleet", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "more H100" in err, err
    f.write_text(yaml.safe_dump({"models": [{"model": "llama-3.1-405b"}], "inventory": ["1xL4"], "n_trials": 8}))
    assert cli_main(["plan", "fleet", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "llama-3.1-405b cannot meet its SLO on any pool" in err, err
    f.write_text(yaml.safe_dump({"models": [], "inventory": ["1xL4"]}))
    assert cli_main(["plan", "fleet", str(f)]) == 2
    assert "fleet.models" in capsys.readouterr().err


def test_cli_fleet_json_and_folder(tmp_path, capsys, small_fleet, monkeypatch):
    """--json and -o: one plan folder per model with its autoscalers, fleet.yaml as given (planning stubbed with
    the module's fleet, so this checks the CLI's writing)."""
    import serveplan.planner.fleet as fleet_mod
    from serveplan.cli import main as cli_main

    monkeypatch.setattr(fleet_mod, "plan_fleet", lambda spec: small_fleet)
    src = tmp_path / "fleet.yaml"
    src.write_text("# mine\n" + yaml.safe_dump(small_fleet.spec.model_dump(mode="json")))
    out = tmp_path / "out"
    assert cli_main(["plan", "fleet", str(src), "--json", "-o", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in doc["models"]] == ["llama-3.1-8b", "code"] and "leftover_gpus" in doc
    assert (out / "fleet.yaml").read_text() == src.read_text()
    for d in ("llama-3-1-8b", "code"):
        assert (out / d / "plan.yaml").is_file() and (out / d / "k8s" / "keda-scaledobject.yaml").is_file()
        assert (out / d / "k8s" / "hpa.yaml").is_file() and (out / d / "k8s" / "deployment.yaml").is_file()
    # One gateway in front of the fleet: each model at its own Service, `auto` routed by prompt class
    # (chat -> the chat model, code -> the codegen model).
    gw = yaml.safe_load((out / "gateway" / "litellm.yaml").read_text())
    services = set()
    for d in ("llama-3-1-8b", "code"):
        for doc_ in yaml.safe_load_all((out / d / "k8s" / "deployment.yaml").read_text()):
            if doc_ and doc_.get("kind") == "Service":
                services.add(doc_["metadata"]["name"])
    hosts = {e["litellm_params"]["api_base"].split("//")[1].split(":")[0] for e in gw["model_list"]}
    assert hosts == services and len(services) == 2
    router = (out / "gateway" / "prompt_router.py").read_text()
    assert '"chat": "meta-llama/Llama-3.1-8B-Instruct"' in router and '"code": "Qwen/Qwen2.5-7B-Instruct"' in router
