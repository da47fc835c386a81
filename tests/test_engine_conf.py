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
