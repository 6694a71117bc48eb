"""contrib/prometheus: the alerting rules pass `promtool check rules` and their unit tests, and
each threshold is shardmon's own default."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shardmon.clock import CLOCK_SKEW_WARN_S
from shardmon.rules import (
    CpuRule,
    DisconnectedRule,
    GatewayOutageRule,
    IdentifyBudgetRule,
    LoopStallRule,
    MemoryRule,
    OfflineRule,
    RestartStormRule,
    ZombieRule,
)
from shardmon.settings import Settings

PROMETHEUS = Path(__file__).parent.parent / "contrib" / "prometheus"


@pytest.fixture
def promtool() -> str:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing: `make test` installs Debian's prometheus"
    return binary


@pytest.mark.parametrize("command", [["check", "rules", "shardmon.rules.yml"],
                                     ["test", "rules", "shardmon.test.yml"]])  # fmt: skip
def test_promtool_passes(promtool: str, command: list[str]) -> None:
    run = subprocess.run([promtool, *command], cwd=PROMETHEUS, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_each_threshold_is_shardmons_default() -> None:
    groups = yaml.safe_load((PROMETHEUS / "shardmon.rules.yml").read_text())["groups"]
    rules = {rule["labels"]["rule"]: rule for group in groups for rule in group["rules"]}
    interval = Settings.model_fields["sample_interval_s"].default
    expected = {
        "offline": ("expr", f"> {OfflineRule.threshold.default * interval:g}"),
        "memory": ("expr", f"> {MemoryRule.threshold.default:g}"),
        "cpu": ("expr", f"> {CpuRule.threshold.default:g}"),
        "restart_storm": ("expr", f">= {RestartStormRule.threshold.default:g}"),
        "disconnected": ("for", f"{DisconnectedRule.threshold.default:g}s"),
        "zombie": ("expr", f"> {ZombieRule.threshold.default:g}"),
        "loop_stall": ("expr", f">= {LoopStallRule.threshold.default:g}"),
        "identify_budget": ("expr", f"< {IdentifyBudgetRule.threshold.default:g}"),
        "gateway_outage": ("expr", f">= {GatewayOutageRule.threshold.default:g}"),
        "clock_skew": ("expr", f"> {CLOCK_SKEW_WARN_S:g}"),
    }
    for name, (field, text) in expected.items():
        assert re.search(rf"{re.escape(text)}(\s|$)", str(rules[name][field])), (name, text)
    assert set(rules) == set(expected) | {"leader"}
