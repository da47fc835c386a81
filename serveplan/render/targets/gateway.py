"""A gateway in front of serving engines, generated for LiteLLM proxy (`litellm --config gateway/litellm.yaml`).

Three things, all in LiteLLM's own config keys (checked against litellm 1.108.7):
  - routing by model name: one `model_list` entry per endpoint, `model_name` the name clients ask for,
    `litellm_params.model: hosted_vllm/<served name>` with `api_base` the engine's `/v1`;
  - canary weights: several entries under one `model_name`, each with `litellm_params.weight`, picked by
    `router_settings.routing_strategy: simple-shuffle` (litellm/router_strategy/simple_shuffle.py draws a
    deployment with probability proportional to `weight`);
  - routing by prompt class: a virtual model (`auto`) that no deployment serves; `gateway/prompt_router.py`, a
    `CustomLogger` whose `async_pre_call_hook` LiteLLM's proxy runs before routing
    (litellm/proxy/common_request_processing.py: `pre_call_hook`, then `route_request`), classifies the prompt
    and rewrites `model` to the class's model. It is loaded by `litellm_settings.callbacks:
    prompt_router.proxy_handler_instance`, resolved next to the config file (litellm/proxy/types_utils/utils.py
    `get_instance_fn`).

Prompt classes are a stated heuristic, not a learned classifier: `code` if the prompt holds a code marker
(a fence, `def `, `#include`, ...), else `long` if it has more than `long_words` whitespace-separated words
(the fake engine's and a rough tokenizer's measure), else `chat`. The generated hook carries
`classify_prompt`'s own source, so the gateway classifies exactly as the tested function does.
"""

from __future__ import annotations

import inspect
import json
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from serveplan.render.targets.common import CONTAINER_PORT, Deployment

PromptClass = Literal["chat", "long", "code"]
PROMPT_CLASSES: tuple[PromptClass, ...] = ("chat", "long", "code")
DEFAULT_CODE_MARKERS: tuple[str, ...] = ("```", "def ", "class ", "import ", "#include", "function ", "return ",
                                         "=>", "};", "SELECT ", "public static")
LITELLM_VERSION = "1.108.7"  # the version whose config keys and hook signature this module was checked against


class GatewayEndpoint(BaseModel):
    """One engine behind the gateway."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = Field(pattern=r"^https?://[^/\s]+/?$")
    """Base URL of the engine's OpenAI-compatible server, without `/v1` (e.g. `http://127.0.0.1:8000`)."""
    weight: float = Field(default=1.0, gt=0)
    """Share of the route's requests, relative to the other endpoints of the same route (90 and 10: a canary)."""


class GatewayRoute(BaseModel):
    """One model name clients ask for, served by one or more endpoints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(min_length=1)
    """The name clients send as `model` (also the engines' served model name unless `served_model` is set)."""
    endpoints: tuple[GatewayEndpoint, ...] = Field(min_length=1)
    """Where requests for this model go; drawn in proportion to their weights."""
    prompt_class: PromptClass | None = None
    """Requests to the virtual model whose prompt falls in this class come here (`chat` is the default class)."""
    served_model: str | None = None
    """The model name the engines serve, when it differs from `model` (vLLM's `--served-model-name`)."""

    @property
    def engine_model(self) -> str:
        return self.served_model or self.model


class GatewaySpec(BaseModel):
    """Everything the gateway config is generated from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    routes: tuple[GatewayRoute, ...] = Field(min_length=1)
    """The model names the gateway serves."""
    virtual_model: str = "auto"
    """The model name routed by prompt class (only when some route has a `prompt_class`)."""
    long_words: int = Field(default=1000, gt=0)
    """A prompt with more words than this is `long` (unless it is `code`)."""
    code_markers: tuple[str, ...] = DEFAULT_CODE_MARKERS
    """Substrings that make a prompt `code` (checked first)."""
    port: int = Field(default=4000, ge=1, le=65535)
    """The port the gateway listens on (only used in the README's command)."""

    @model_validator(mode="after")
    def _consistent(self) -> "GatewaySpec":
        names = [r.model for r in self.routes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"model names must be unique, {dup} appear more than once (put several endpoints "
                             "in one route instead)")
        classes = [r.prompt_class for r in self.routes if r.prompt_class]
        dupc = sorted({c for c in classes if classes.count(c) > 1})
        if dupc:
            raise ValueError(f"each prompt class goes to one route, {dupc} are given to several")
        if classes and "chat" not in classes:
            raise ValueError("prompt-class routing needs a route with prompt_class 'chat' (the default class)")
        if self.virtual_model in names:
            raise ValueError(f"the virtual model {self.virtual_model!r} is also a route's model name")
        return self

    @property
    def class_routes(self) -> dict[str, str]:
        return {r.prompt_class: r.model for r in self.routes if r.prompt_class}


def classify_prompt(text: str, long_words: int, code_markers: tuple[str, ...]) -> str:
    """'code' if the text holds a code marker, else 'long' above `long_words` words, else 'chat'."""
    if any(m in text for m in code_markers):
        return "code"
    if len(text.split()) > long_words:
        return "long"
    return "chat"


def litellm_config(spec: GatewaySpec) -> dict:
    """LiteLLM proxy config (model_list, router_settings, litellm_settings) as a mapping."""
    model_list = []
    for r in spec.routes:
        for e in r.endpoints:
            model_list.append({"model_name": r.model,
                               "litellm_params": {"model": f"hosted_vllm/{r.engine_model}",
                                                  "api_base": e.url.rstrip("/") + "/v1",
                                                  "api_key": "none", "weight": e.weight}})
    cfg: dict = {"model_list": model_list,
                 "router_settings": {"routing_strategy": "simple-shuffle"},
                 # the proxy refuses to start without a master key (litellm/proxy/auth/master_key_boot_check.py)
                 "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
                 "litellm_settings": {"drop_params": True}}
    if spec.class_routes:
        cfg["litellm_settings"]["callbacks"] = ["prompt_router.proxy_handler_instance"]
    return cfg


_HOOK = '''"""Routes requests for the virtual model {virtual!r} to a model by prompt class (generated by serveplan).

LiteLLM proxy runs `async_pre_call_hook` before it routes a request; rewriting data["model"] there picks the
model group. Loaded by `litellm_settings.callbacks: [prompt_router.proxy_handler_instance]` in litellm.yaml.
"""

from litellm.integrations.custom_logger import CustomLogger

VIRTUAL_MODEL = {virtual!r}
CLASS_ROUTES = {routes}
LONG_WORDS = {long_words!r}
CODE_MARKERS = {markers!r}


{classify}

def prompt_text(data):
    """The text a request carries: chat messages' text parts, or a completion's prompt."""
    parts = []
    for m in data.get("messages") or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts += [p for p in prompt if isinstance(p, str)]
    return "\\n".join(parts)


class PromptRouter(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if data.get("model") == VIRTUAL_MODEL:
            cls = classify_prompt(prompt_text(data), LONG_WORDS, CODE_MARKERS)
            data["model"] = CLASS_ROUTES.get(cls, CLASS_ROUTES["chat"])
        return data


proxy_handler_instance = PromptRouter()
'''


def prompt_router_py(spec: GatewaySpec) -> str:
    """The hook module litellm.yaml references (carries classify_prompt's own source)."""
    return _HOOK.format(virtual=spec.virtual_model, routes=json.dumps(spec.class_routes, sort_keys=True),
                        long_words=spec.long_words, markers=tuple(spec.code_markers),
                        classify=inspect.getsource(classify_prompt))


def gateway_readme(spec: GatewaySpec) -> str:
    lines = ["# Gateway (LiteLLM proxy)", "",
             "```bash",
             f"pip install 'litellm[proxy]=={LITELLM_VERSION}'",
             "export LITELLM_MASTER_KEY=sk-$(openssl rand -hex 32)   # clients send it as `Authorization: Bearer ...`",
             f"litellm --config gateway/litellm.yaml --port {spec.port}",
             "```", "",
             f"Clients send OpenAI requests to `http://HOST:{spec.port}/v1` and name one of these models:", ""]
    for r in spec.routes:
        ends = ", ".join(f"{e.url} (weight {e.weight:g})" for e in r.endpoints)
        lines.append(f"- `{r.model}` -> {ends}")
    if spec.class_routes:
        lines += ["", f"`{spec.virtual_model}` is routed by prompt class (`gateway/prompt_router.py`): `code` if the "
                  f"prompt holds a code marker, else `long` above {spec.long_words} words, else `chat`: " +
                  ", ".join(f"{c} -> `{m}`" for c, m in sorted(spec.class_routes.items())) + "."]
    return "\n".join(lines) + "\n"


def gateway_files(spec: GatewaySpec) -> dict[str, str]:
    """Relative path -> content: gateway/litellm.yaml, gateway/prompt_router.py (prompt classes only),
    gateway/README.md."""
    files = {"gateway/litellm.yaml": "# generated by serveplan for litellm " + LITELLM_VERSION + "\n" +
             yaml.safe_dump(litellm_config(spec), sort_keys=False),
             "gateway/README.md": gateway_readme(spec)}
    if spec.class_routes:
        files["gateway/prompt_router.py"] = prompt_router_py(spec)
    return files


def plan_gateway_files(dep: Deployment, port: int = 4000) -> tuple[dict[str, str], str | None]:
    """(files, or a sentence why none were written) for one plan: its model at every local replica's port,
    equal weights (render_artifacts writes them into the plan folder)."""
    if not dep.fits_one_node:
        return {}, (f"gateway/: not written: the plan needs {dep.candidate.total_gpus} GPUs and one node has "
                    f"{dep.request.inventory.gpus_per_node}, so there are no local replica ports to route to.")
    ends = tuple(GatewayEndpoint(url=f"http://127.0.0.1:{x.port}") for x in dep.local_launches())
    spec = GatewaySpec(routes=(GatewayRoute(model=dep.served_model_name, endpoints=ends),), port=port)
    return gateway_files(spec), None


# A fleet model's traffic preset -> the prompt class the gateway's heuristic sends it (the virtual model routes
# by class only when every class present maps to one model and a `chat` model exists).
TRAFFIC_CLASS = {"chat": "chat", "summarize": "long", "rag": "long", "codegen": "code"}


def fleet_gateway_files(deployments: list[tuple[Deployment, str]], port: int = 4000) -> dict[str, str]:
    """gateway/ for a fleet: each model by its served name at its Kubernetes Service (k8s/ of its folder), and
    the virtual model routing by prompt class when the models' traffic presets give one model per class.
    deployments: (the model's Deployment, its traffic preset name)."""
    classes = [TRAFFIC_CLASS.get(t) for _, t in deployments]
    by_class = "chat" in classes and all(c is None or classes.count(c) == 1 for c in classes)
    routes = tuple(GatewayRoute(model=dep.served_model_name,
                                endpoints=(GatewayEndpoint(url=f"http://{dep.name}:{CONTAINER_PORT}"),),
                                prompt_class=c if by_class else None)
                   for (dep, _), c in zip(deployments, classes))
    return gateway_files(GatewaySpec(routes=routes, port=port))
