"""The engine config group and the engine adapters must name the same pinned version."""

import pytest

from serveplan.render.engines.base import get_adapter
from serveplan.planner import catalog
from serveplan.planner.spec import EngineConfig


@pytest.mark.parametrize("name", catalog.options("engine"))
def test_conf_engine_version_matches_adapter(name):
    conf = EngineConfig(**catalog.catalog_doc("engine", name))
    adapter = get_adapter(name)
    assert conf.version == adapter.version
    assert conf.image == adapter.image


@pytest.mark.parametrize("version", ["0.26.0", "0.33.0"])
def test_conf_image_follows_engine_version(version):
    """engine.version=X moves the image the plan records along with the adapter's."""
    from serveplan.planner.config import build_request

    eng = build_request(model="llama-8b", gpus="1xH100", overrides=[f"engine.version={version}"]).engine
    assert eng.version == version and eng.image == get_adapter("vllm", version).image == f"vllm/vllm-openai:v{version}"


def test_python_defaults_match_the_default_engine_conf():
    """Defaults in one place: a Candidate or EngineConfig built in Python gets vLLM's conf value."""
    import yaml

    from serveplan.planner.catalog import CONF_DIR
    from serveplan.planner.spec import VLLM_GPU_MEMORY_UTILIZATION, Candidate, EngineConfig

    conf = yaml.safe_load((CONF_DIR / "engine" / "vllm.yaml").read_text())
    assert conf["gpu_memory_utilization"] == VLLM_GPU_MEMORY_UTILIZATION
    assert Candidate().gpu_memory_utilization == VLLM_GPU_MEMORY_UTILIZATION
    assert EngineConfig(name="vllm", version="0.26.0").gpu_memory_utilization == VLLM_GPU_MEMORY_UTILIZATION
