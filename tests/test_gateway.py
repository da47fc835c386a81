"""The generated LiteLLM gateway: config and hook as text, and end to end with the real litellm proxy in front of
fake engines on loopback.

The end-to-end test needs the `litellm` proxy executable: SERVEPLAN_LITELLM=/path/to/bin/litellm, or `litellm`
on PATH. litellm[proxy] pins versions (rich<14, python-dateutil<3) that may not match this environment, so it can
live in its own venv: `python -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]==1.108.7'`.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections import Counter

import httpx
import pytest
import yaml
from pydantic import ValidationError

from conftest import free_port, group_alive, start_engine, stop_engine
from serveplan.render.targets.common import resolve
from serveplan.render.targets.gateway import (DEFAULT_CODE_MARKERS, GatewayEndpoint, GatewayRoute, GatewaySpec,
                                              classify_prompt, gateway_files, litellm_config, plan_gateway_files)

LONG_WORDS = 200
SHORT = "Hello, how are you today?"
LONG = " ".join(["The quarterly report says revenue grew in every region."] * 40)  # 360 words
CODE = "Why does this fail?\n```python\ndef f(x):\n    return x[0]\n```"


def ep(url: str, weight: float = 1.0) -> GatewayEndpoint:
    return GatewayEndpoint(url=url, weight=weight)


# ------------------------------------------------------------------------------------------- as text
def test_classify_prompt():
    assert classify_prompt(SHORT, LONG_WORDS, DEFAULT_CODE_MARKERS) == "chat"
    assert classify_prompt(LONG, LONG_WORDS, DEFAULT_CODE_MARKERS) == "long"
    assert classify_prompt(CODE, LONG_WORDS, DEFAULT_CODE_MARKERS) == "code"
    assert classify_prompt(LONG + CODE, LONG_WORDS, DEFAULT_CODE_MARKERS) == "code"  # code is checked first


def test_spec_refuses_inconsistent_routes():
    a = GatewayRoute(model="a", endpoints=(ep("http://127.0.0.1:1"),), prompt_class="chat")
    with pytest.raises(ValidationError, match="unique"):
        GatewaySpec(routes=(a, a))
    with pytest.raises(ValidationError, match="prompt_class 'chat'"):
        GatewaySpec(routes=(GatewayRoute(model="b", endpoints=(ep("http://127.0.0.1:1"),), prompt_class="code"),))
    with pytest.raises(ValidationError, match="virtual model"):
        GatewaySpec(routes=(a,), virtual_model="a")
    with pytest.raises(ValidationError):
        GatewayEndpoint(url="http://127.0.0.1:1/v1")  # base URL only: /v1 is added
    with pytest.raises(ValidationError):
        GatewayEndpoint(url="http://127.0.0.1:1", weight=0)


def test_config_and_hook():
    spec = GatewaySpec(routes=(
        GatewayRoute(model="chat-8b", endpoints=(ep("http://127.0.0.1:1", 9), ep("http://127.0.0.1:2", 1)),
                     prompt_class="chat"),
        GatewayRoute(model="code-7b", endpoints=(ep("http://127.0.0.1:3"),), prompt_class="code")))
    files = gateway_files(spec)
    assert sorted(files) == ["gateway/README.md", "gateway/litellm.yaml", "gateway/prompt_router.py"]
    cfg = yaml.safe_load(files["gateway/litellm.yaml"])
    assert cfg == litellm_config(spec)
    assert [(m["model_name"], m["litellm_params"]["api_base"], m["litellm_params"]["weight"])
            for m in cfg["model_list"]] == [("chat-8b", "http://127.0.0.1:1/v1", 9), ("chat-8b", "http://127.0.0.1:2/v1", 1),
                                            ("code-7b", "http://127.0.0.1:3/v1", 1)]
    assert cfg["litellm_settings"]["callbacks"] == ["prompt_router.proxy_handler_instance"]
    hook = files["gateway/prompt_router.py"]
    compile(hook, "prompt_router.py", "exec")
    assert 'CLASS_ROUTES = {"chat": "chat-8b", "code": "code-7b"}' in hook
    assert "litellm --config gateway/litellm.yaml --port 4000" in files["gateway/README.md"]
    # no prompt classes: no hook, no callbacks
    plain = gateway_files(GatewaySpec(routes=(GatewayRoute(model="m", endpoints=(ep("http://127.0.0.1:1"),)),)))
    assert "gateway/prompt_router.py" not in plain
    assert "callbacks" not in yaml.safe_load(plain["gateway/litellm.yaml"])["litellm_settings"]


def test_plan_gateway_routes_to_every_replica():
    from test_targets import make_plan as targets_plan

    dep = resolve(targets_plan(tp=2, replicas=3), None, 9000)
    files, why = plan_gateway_files(dep, port=4100)
    assert why is None
    cfg = yaml.safe_load(files["gateway/litellm.yaml"])
    assert [m["litellm_params"]["api_base"] for m in cfg["model_list"]] == [f"http://127.0.0.1:{9000 + i}/v1"
                                                                           for i in range(3)]
    assert {m["model_name"] for m in cfg["model_list"]} == {dep.served_model_name}
    assert {m["litellm_params"]["weight"] for m in cfg["model_list"]} == {1.0}
    assert "--port 4100" in files["gateway/README.md"]
    files, why = plan_gateway_files(resolve(targets_plan(nodes=2, tp=8, pp=2), None, 8000))
    assert files == {} and "one node has 8" in why
    # `plan -o` writes the same files into the plan folder (render_artifacts), at the ports launch.sh uses.
    from serveplan.render.targets import render_artifacts

    written = render_artifacts(targets_plan(tp=2, replicas=3), base_port=9000)
    assert {k: v for k, v in written.items() if k.startswith("gateway/")} == plan_gateway_files(dep)[0]
    assert "gateway/litellm.yaml" in written["README.md"]


# ------------------------------------------------------------------------------------------- end to end
def _litellm_bin() -> str | None:
    return os.environ.get("SERVEPLAN_LITELLM") or shutil.which("litellm")


def _served(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=5).text
    return int(sum(float(v) for v in re.findall(r"^vllm:request_success_total\{[^}]*\} (\S+)$", text, re.M)))


@pytest.mark.slow
@pytest.mark.skipif(_litellm_bin() is None, reason="litellm proxy not found: set SERVEPLAN_LITELLM=/path/to/bin/litellm "
                    "or put `litellm` on PATH (pip install 'litellm[proxy]==1.108.7', in its own venv if need be)")
def test_litellm_gateway_end_to_end(tmp_path):
    names = {"chat": "chat-8b", "long": "sum-70b", "code": "code-7b", "heavy": "canary-8b", "light": "canary-8b"}
    engines: dict[str, tuple[subprocess.Popen, str]] = {}
    proxy: subprocess.Popen | None = None
    left: list[int] = []
    log = tmp_path / "litellm.log"
    try:
        for key, name in names.items():
            engines[key] = start_engine("--served-model-name", name, FAKE_ENGINE_TTFT_MS="1", FAKE_ENGINE_ITL_MS="0")
        url = {k: u for k, (_, u) in engines.items()}
        spec = GatewaySpec(long_words=LONG_WORDS, routes=(
            GatewayRoute(model="chat-8b", endpoints=(ep(url["chat"]),), prompt_class="chat"),
            GatewayRoute(model="sum-70b", endpoints=(ep(url["long"]),), prompt_class="long"),
            GatewayRoute(model="code-7b", endpoints=(ep(url["code"]),), prompt_class="code"),
            GatewayRoute(model="canary-8b", endpoints=(ep(url["heavy"], 90), ep(url["light"], 10)))))
        for rel, text in gateway_files(spec).items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
        port = free_port()
        key = "sk-" + secrets.token_hex(32)
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
               "LITELLM_MASTER_KEY": key}
        env.pop("DATABASE_URL", None)
        with log.open("wb") as out:
            proxy = subprocess.Popen([_litellm_bin(), "--config", str(tmp_path / "gateway/litellm.yaml"),
                                      "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=tmp_path,
                                     stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        gw = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(gw + "/health/readiness", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proxy.poll() is None, f"litellm exited ({proxy.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"litellm not ready in 60 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)

        with httpx.Client(base_url=gw + "/v1", timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
            def ask(model: str, text: str) -> dict:
                r = client.post("/chat/completions", json={"model": model, "max_tokens": 2,
                                                           "messages": [{"role": "user", "content": text}]})
                assert r.status_code == 200, r.text
                return r.json()

            def check(model: str, text: str, engine: str) -> None:
                before = {k: _served(u) for k, u in url.items()}
                ask(model, text)
                after = {k: _served(u) for k, u in url.items()}
                moved = {k for k in url if after[k] != before[k]}
                assert moved == {engine}, f"{model} / {text[:30]!r} reached {moved}, expected {engine}"

            # by model name
            check("chat-8b", SHORT, "chat")
            check("sum-70b", SHORT, "long")
            check("code-7b", LONG, "code")
            # by prompt class, through the virtual model
            check("auto", SHORT, "chat")
            check("auto", LONG, "long")
            check("auto", CODE, "code")
            # canary: 90/10
            before = Counter({k: _served(url[k]) for k in ("heavy", "light")})
            for _ in range(50):
                ask("canary-8b", SHORT)
            got = Counter({k: _served(url[k]) for k in ("heavy", "light")})
            got.subtract(before)
            assert got["heavy"] + got["light"] == 50
            assert 35 <= got["heavy"] <= 50, got  # 70-100% on the heavy side (expected 45)
    finally:
        if proxy is not None:
            pgid = proxy.pid
            if proxy.poll() is None:
                os.killpg(pgid, signal.SIGTERM)
                try:
                    proxy.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(pgid, signal.SIGKILL)
                    proxy.wait(timeout=10)
            deadline = time.monotonic() + 5
            while group_alive(pgid) and time.monotonic() < deadline:  # workers that outlive the parent
                time.sleep(0.1)
            left = group_alive(pgid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
        for proc, _ in engines.values():
            stop_engine(proc)
    assert not left, f"litellm left processes behind: {left}"
