"""The Prometheus alert rules of the consistency monitor, evaluated by promtool on fake series.

``alert_rules_test.yaml`` feeds counters where one feature mismatches in 1 %
of its ``current`` checks and another only in ``behind`` ones (must not
alert), and a pending gauge whose checks stop (must alert after 30 minutes).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[2] / "deploy" / "prometheus" / "rules" / "consistency.yml"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_rules_are_valid_and_fire_on_current_mismatches_only() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(["promtool", "test", "rules", "alert_rules_test.yaml"], cwd=HERE,
                          capture_output=True, text=True, timeout=60, check=False)
    assert test.returncode == 0, test.stdout + test.stderr
