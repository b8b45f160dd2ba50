"""Plugins: discovery from a real installed distribution, hooks, blocking, validation."""

from __future__ import annotations

import json
import textwrap

import pytest

from pipeyard import DiffusionPipeline, plugins
from pipeyard.errors import PipeyardWarning, PluginError

_PLUGIN_MODULE = textwrap.dedent(
    '''
    from pipeyard import ConfigMixin, register_to_config
    from pipeyard.plugins import hookimpl

    LOADED = []

    class Widget(ConfigMixin):
        config_name = "widget_config.json"

        @register_to_config
        def __init__(self, size: int = 1):
            self.size = size

    @hookimpl
    def pipeyard_resolve_component_class(library, class_name):
        if library == "widgets" and class_name == "Widget":
            return Widget
        return None

    @hookimpl
    def pipeyard_component_libraries():
        return ["widgets"]

    @hookimpl
    def pipeyard_pipeline_loaded(pipeline):
        LOADED.append(pipeline)
    '''
)


def _install_distribution(root, dist_name, entry_points, modules):
    """Write a real (minimal) installed distribution: dist-info with metadata and entry points."""
    info = root / f"{dist_name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[pipeyard]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)


@pytest.fixture
def installed_plugins(tmp_path, monkeypatch):
    site = tmp_path / "site"
    _install_distribution(site, "pipeyard_widgets", {"widgets": "widget_plugin"}, {"widget_plugin": _PLUGIN_MODULE})
    _install_distribution(site, "pipeyard_broken", {"broken": "broken_plugin"},
                          {"broken_plugin": "raise RuntimeError('this plugin is broken')\n"})
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    yield site
    import sys

    for name in ("widget_plugin", "broken_plugin"):
        sys.modules.pop(name, None)


class WidgetPipeline(DiffusionPipeline):
    def __init__(self, widget):
        super().__init__()
        self.register_modules(widget=widget)


@pytest.fixture
def widget_repo(tmp_path):
    repo = tmp_path / "repo"
    (repo / "widget").mkdir(parents=True)
    (repo / "model_index.json").write_text(json.dumps({"_class_name": "WidgetPipeline", "widget": ["widgets", "Widget"]}))
    (repo / "widget" / "widget_config.json").write_text(json.dumps({"size": 5}))
    return repo


def test_entry_point_plugin_resolves_a_new_library(installed_plugins, widget_repo):
    with pytest.warns(PipeyardWarning, match="'broken'.*pipeyard_broken.*this plugin is broken"):
        pipe = WidgetPipeline.from_pretrained(widget_repo)
    assert type(pipe.widget).__name__ == "Widget" and pipe.widget.size == 5
    assert "widgets" in plugins.list_plugins() and "broken" not in plugins.list_plugins()


def test_pipeline_loaded_hook_sees_the_pipeline(installed_plugins, widget_repo):
    with pytest.warns(PipeyardWarning):
        pipe = WidgetPipeline.from_pretrained(widget_repo)
    import widget_plugin

    assert widget_plugin.LOADED == [pipe]


def test_broken_plugin_warns_once_and_others_still_load(installed_plugins):
    with pytest.warns(PipeyardWarning) as record:
        names = plugins.list_plugins()
    assert len(record) == 1 and "broken" in str(record[0].message)
    assert names == ["widgets"]
    assert plugins.extra_libraries() == ["widgets"]


def test_autoload_can_be_turned_off(installed_plugins, monkeypatch):
    monkeypatch.setenv("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert plugins.list_plugins() == []


def test_blocked_plugin_is_never_loaded(installed_plugins):
    plugins.block("broken")
    plugins.block("widgets")
    assert plugins.list_plugins() == []
    with pytest.raises(PluginError, match="blocked"):
        plugins.register(object(), name="widgets")


def test_hook_arguments_are_validated_at_registration(monkeypatch):
    monkeypatch.setenv("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD", "1")

    class Typo:
        @plugins.hookimpl
        def pipeyard_resolve_component_class(self, library, klass_name):
            return None

    with pytest.raises(PluginError, match=r"(?s)plugin 'typo' was refused.*klass_name"):
        plugins.register(Typo(), name="typo")


def test_register_unregister_round_trip(monkeypatch):
    monkeypatch.setenv("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD", "1")

    class Quiet:
        @plugins.hookimpl
        def pipeyard_component_libraries(self):
            return ["quiet"]

    assert plugins.register(Quiet(), name="quiet") == "quiet"
    assert plugins.extra_libraries() == ["quiet"]
    plugins.unregister("quiet")
    assert plugins.extra_libraries() == []


def test_plugin_resolves_a_pipeline_name_through_the_trust_gate(tmp_path, monkeypatch):
    from pipeyard.errors import UntrustedCodeError
    from pipeyard.host import load_pipeline_class

    monkeypatch.setenv("PIPEYARD_DISABLE_PLUGIN_AUTOLOAD", "1")
    private = tmp_path / "private_index" / "acme_upscale.py"
    private.parent.mkdir()
    private.write_text(
        "from pipeyard import DiffusionPipeline\n\n\n"
        "class AcmeUpscale(DiffusionPipeline):\n    def __call__(self):\n        return 'acme'\n"
    )
    asked = []

    class PrivateIndex:
        @plugins.hookimpl
        def pipeyard_resolve_pipeline(self, name, revision):
            asked.append((name, revision))
            return private if name == "acme/upscale" else None

    plugins.register(PrivateIndex(), name="private-index")
    with pytest.raises(UntrustedCodeError, match="plugin"):
        load_pipeline_class("acme/upscale")
    assert load_pipeline_class("acme/upscale", trust_remote_code=True).__name__ == "AcmeUpscale"
    assert asked[0] == ("acme/upscale", None)
