"""The plugin manager: hook specs, built-ins, entry points, bad plugins."""

from __future__ import annotations

import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import bot4
from bot4 import BreakerConfig, Core, ManualClock, PluginError, make_plugin_manager
from bot4.plugins import hookspecs
from tests.helpers import fail


def test_every_hook_is_prefixed_typed_and_documented() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith("bot4_")]
    assert {"bot4_breaker_state_changed", "bot4_call_rejected", "bot4_fuse_changed"} <= set(specs)
    for name in specs:
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and ":return:" in fn.__doc__, name
        assert "return" in fn.__annotations__, name


def test_builtins_are_registered_like_any_plugin() -> None:
    pm = make_plugin_manager(entry_points=False)
    assert pm.get_plugin("bot4.event_log") is not None
    pm.unregister(name="bot4.event_log")  # and can be removed by name like any plugin
    assert pm.get_plugin("bot4.event_log") is None


def test_builtin_event_log(clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    with Core.create(clock=clock, plugins=make_plugin_manager(entry_points=False)) as core:
        br = core.breaker("venue", BreakerConfig(consecutive_failures=1))
        with caplog.at_level(logging.INFO, logger="bot4.events"):
            fail(br)
    assert "breaker venue: CLOSED -> OPEN (1 consecutive failures)" in caplog.text


def test_invalid_plugin_fails_at_registration_naming_it() -> None:
    class Typo:
        @bot4.hookimpl
        def bot4_breaker_state_changd(self, breaker):  # type: ignore[no-untyped-def]
            pass

    class WrongArgs:
        @bot4.hookimpl
        def bot4_call_rejected(self, breaker, error, extra):  # type: ignore[no-untyped-def]
            pass

    pm = make_plugin_manager(entry_points=False)
    with pytest.raises(PluginError, match="'wrong-args'"):
        pm.register(WrongArgs(), "wrong-args")
    with pytest.raises(PluginError, match="'typo'.*bot4_breaker_state_changd"):
        pm.register(Typo(), "typo")
    assert pm.get_plugin("typo") is None
    plugin = object()
    pm.register(plugin, "same")
    with pytest.raises(PluginError, match="'same'"):
        pm.register(object(), "same")


@pytest.fixture
def entry_point_plugin(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "bot4_demo_plugin.py").write_text(
        textwrap.dedent(
            """
            import bot4

            seen = []

            @bot4.hookimpl
            def bot4_breaker_state_changed(breaker, old, new, reason):
                seen.append((breaker.name, new.name))
            """
        )
    )
    dist = tmp_path / "bot4_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bot4-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bot4]\ndemo = bot4_demo_plugin\n")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("bot4_demo_plugin", None)


def test_plugins_load_from_the_entry_point_group(entry_point_plugin: Path, clock: ManualClock) -> None:
    with Core.create(clock=clock) as core:
        assert core.plugins.get_plugin("demo") is not None
        br = core.breaker("venue", BreakerConfig(consecutive_failures=1))
        fail(br)
    import bot4_demo_plugin  # type: ignore[import-not-found]

    assert bot4_demo_plugin.seen == [("venue", "OPEN")]


def test_a_broken_entry_point_names_the_plugin(entry_point_plugin: Path) -> None:
    (entry_point_plugin / "bot4_demo_plugin.py").write_text("raise ImportError('missing dependency')\n")
    with pytest.raises(PluginError, match="'demo'.*missing dependency"):
        make_plugin_manager()
