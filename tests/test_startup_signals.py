"""SIGTERM while a command is still starting (importing torch, loading data) stops it
like Ctrl-C: exit 130 and one line, not a silent 143."""

from __future__ import annotations

import signal
import time

import pytest

from cli_helpers import CLIProcess, cli_env, cpu_digits_mlp_study, wait_for_group_to_empty, write_study


# Several moments of the start-up: in the interpreter's imports, in torch's, in the checks.
# An interrupt raised inside an import once made CPython end the process by SIGINT (-2).
@pytest.mark.parametrize("delay_s", [0.6, 1.0, 1.4, 1.8])
def test_sigterm_during_start_up_exits_130_with_one_line(tmp_path, delay_s):
    env = cli_env(tmp_path / "cache")
    study = write_study(tmp_path / "s.toml", cpu_digits_mlp_study("s", grid="seed = [0, 1]", train="epochs = 50"))
    with CLIProcess(("run", study, "--store", tmp_path / "s.db", "--quiet"), env=env, cwd=tmp_path) as cli:
        time.sleep(delay_s)
        assert cli.proc.poll() is None, "the run ended before it could be stopped"
        cli.proc.send_signal(signal.SIGTERM)
        cli.communicate(timeout=120)
        assert wait_for_group_to_empty(cli.pid) == []
    assert cli.returncode == 130, cli.describe()
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], cli.describe()
    assert "Traceback" not in cli.stderr
