"""Hydra composition at the edge: config groups + CLI sugar + overrides -> one frozen PlanRequest.

Hydra is used for composition only (the compose API, no app, no working-directory change). The composed
config is validated by the pydantic models in `spec`; errors become one sentence naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from serveplan.errors import validation_sentence
from serveplan.errors import ConfigError, UnknownName, close_matches
from serveplan.fileio import yaml_load
from serveplan.planner import catalog
from serveplan.planner.spec import (SLO, EngineConfig, GPUSpec, Inventory, ModelSpec, PlanRequest,
                                    SearchConfig, Traffic)

GROUP_MODELS: dict[str, type[BaseModel]] = {
    "model": ModelSpec, "hardware": Inventory, "traffic": Traffic, "slo": SLO,
    "search": SearchConfig, "engine": EngineConfig,
}


def _field_model(group_model: type[BaseModel], path: list[str]) -> tuple[bool, list[str]]:
    """Whether a dotted path names a field of the group's model; and the valid names at the failing level."""
    model: Any = group_model
    for part in path:
        fields = model.model_fields
        if part not in fields:
            return False, sorted(fields)
        ann = fields[part].annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if model is None:
            return True, []
    return True, []


def _prepare_overrides(overrides: list[str]) -> list[str]:
    """Check `group.field=value` overrides against the pydantic fields (one sentence on a typo), and let
    them set fields a preset's YAML leaves out (`++`)."""
    out = []
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"Override '{ov}' is not KEY=VALUE (e.g. slo.ttft_p99_ms=800 or traffic=rag).")
        key, _ = ov.split("=", 1)
        if key.startswith(("+", "~", "hydra")) or "." not in key:
            out.append(ov)
            continue
        group, *path = key.split(".")
        if group not in GROUP_MODELS:
            raise ConfigError(f"Override '{ov}': '{group}' is not a config group; groups are "
                              f"{', '.join(GROUP_MODELS)}.")
        ok, valid = _field_model(GROUP_MODELS[group], path)
        if not ok:
            bad = path[len(path) - 1] if len(path) == 1 else ".".join(path)
            close = close_matches(path[-1], valid) if valid else []
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"Override '{ov}': '{bad}' is not a field of {group}.{hint} "
                              f"Valid: {', '.join(valid)}.")
        out.append("++" + ov)
    return out


def _compose(overrides: list[str]) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(catalog.CONF_DIR), version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).strip().splitlines()[0]
        for group in GROUP_MODELS:
            if f"'{group}/" in msg or f"{group}/" in msg and "Could not find" in msg:
                name = msg.split(f"{group}/", 1)[1].split("'")[0]
                raise UnknownName(f"{group} option", name, catalog.options(group)) from None
        raise ConfigError(f"Bad override: {msg}") from None


def _slo_of_traffic_preset(overrides: list[str]) -> list[str]:
    """A traffic preset may name the SLO preset that fits it (offline-batch: slo=none); it applies unless the
    overrides choose an SLO themselves (slo=... or any slo.FIELD=...)."""
    traffic = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("traffic=")), None)
    if traffic is None or any(o.startswith(("slo=", "slo.")) for o in overrides):
        return []
    path = catalog.CONF_DIR / "traffic" / f"{traffic}.yaml"
    preset = (yaml_load(path.read_text()) or {}).get("slo_preset") if path.is_file() else None
    return [f"slo={preset}"] if preset else []


def build_request(*, model: str | None = None, gpus: str | None = None, traffic: str | None = None,
                  engine: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PlanRequest:
    """The CLI's sugar (`--model llama-70b --gpus 2xA100 --traffic rag --engine vllm`) plus Hydra
    overrides, composed and validated."""
    ovs: list[str] = []
    model_file: Path | None = None
    traffic_file: Path | None = None
    if model:
        if catalog.looks_like_path(model):
            model_file = Path(model)
        else:
            ovs.append(f"model={catalog.resolve('model', model, 'model')}")
    if gpus:
        option, nodes, per_node = catalog.parse_gpus(gpus)
        ovs += [f"hardware={option}", f"hardware.nodes={nodes}", f"hardware.gpus_per_node={per_node}"]
    if traffic:
        if traffic.endswith((".yaml", ".yml")) or Path(traffic).is_file():
            traffic_file = Path(traffic)
        else:
            ovs.append(f"traffic={catalog.resolve('traffic', traffic, 'traffic preset')}")
    if engine:
        ovs.append(f"engine={catalog.resolve('engine', engine, 'engine')}")
    user = list(overrides)
    # Group-option overrides (model=..., hardware=...) may use aliases too.
    for i, ov in enumerate(user):
        key, _, val = ov.partition("=")
        if key in GROUP_MODELS and val:
            user[i] = f"{key}={catalog.resolve(key, val, key)}"
    ovs += _slo_of_traffic_preset(ovs + user)
    file_ovs = [o for o in user if (model_file and o.startswith("model.")) or
                (traffic_file and o.startswith("traffic."))]
    doc = _compose(_prepare_overrides(ovs + [o for o in user if o not in file_ovs]))
    if model_file:
        doc["model"] = catalog.model_from_hf_config(model_file).model_dump()
    if traffic_file:
        if not traffic_file.is_file():
            raise ConfigError(f"Traffic file '{traffic_file}' does not exist; give a preset "
                              f"({', '.join(catalog.options('traffic'))}) or a YAML file.")
        from serveplan.fileio import read_document

        doc["traffic"] = read_document(traffic_file, "traffic file")
    doc.get("traffic", {}).pop("slo_preset", None)
    for ov in file_ovs:
        key, val = ov.split("=", 1)
        node = doc
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml_load(val)
    return request_from_dict(doc)


def request_from_dict(doc: dict) -> PlanRequest:
    parts: dict[str, Any] = {}
    for group, cls in GROUP_MODELS.items():
        try:
            parts[group] = cls.model_validate(doc.get(group) or {})
        except ValidationError as e:
            raise ConfigError(validation_sentence(e, group)) from None
    key = {"hardware": "inventory"}
    req = {key.get(g, g): v for g, v in parts.items()}
    out = PlanRequest(**req)
    _check_lengths(out)
    _check_weight_methods(out)
    return out


def _check_weight_methods(req: PlanRequest) -> None:
    """bnb-nf4 asked for where the engine cannot load it: one sentence, before planning."""
    from serveplan.planner.checkpoints import BNB_NF4_VERSIONS, bnb_nf4_servable

    eng = req.engine
    if "bnb-nf4" in req.search.allowed_quant and not bnb_nf4_servable(eng.name, eng.version):
        where = ", ".join(f"{e} {' or '.join(v)}" for e, v in BNB_NF4_VERSIONS.items())
        way = (f"engine.version={BNB_NF4_VERSIONS[eng.name][-1]}" if eng.name in BNB_NF4_VERSIONS
               else "one of those engines")
        raise ConfigError(f"search.allowed_quant names bnb-nf4, but {eng.name} {eng.version} has no bitsandbytes "
                          f"quantization (only {where} do); drop bnb-nf4 or plan with {way}.")


def _check_lengths(req: PlanRequest) -> None:
    """What the engine would refuse, refused first: a typical prompt longer than the model's context, or than
    the max_model_len asked for. (A tail beyond the context is planned for, max_model_len capped at the context;
    the engine refuses those requests, and the plan says how many: report.context_sentence.)"""
    mean_in = req.traffic.input_len.mean
    ctx = req.model.max_position_embeddings
    if mean_in >= ctx:
        raise ConfigError(f"The traffic's prompts average {mean_in:,.0f} tokens but {req.model.name}'s context is "
                          f"{ctx:,} tokens; lower traffic.input_len.")
    mml = req.search.max_model_len
    if mml is not None and mml > ctx:
        raise ConfigError(f"search.max_model_len={mml:,} exceeds {req.model.name}'s context of {ctx:,} tokens.")
    if mml is not None and mean_in >= mml:
        raise ConfigError(f"search.max_model_len={mml:,} is shorter than the traffic's prompts (average "
                          f"{mean_in:,.0f} tokens); raise it or lower traffic.input_len.")


def load_traffic(name_or_file: str, overrides: list[str] | tuple[str, ...] = ()) -> Traffic:
    """A traffic preset or YAML file, with `traffic.field=value` (or `field=value`) overrides."""
    ovs = [o if o.startswith("traffic.") else f"traffic.{o}" for o in overrides]
    return build_request(traffic=name_or_file, overrides=ovs).traffic


__all__ = ["build_request", "request_from_dict", "load_traffic", "GPUSpec"]
