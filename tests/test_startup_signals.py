"""SIGTERM while a command is still starting (importing torch, loading data) stops it
like Ctrl-C: exit 130 and one line, not a silent 143."""

from __future__ import annotations

import signal
import time

from cli_helpers import CLIProcess, cli_env, cpu_digits_mlp_study, wait_for_group_to_empty, write_study


def test_sigterm_during_start_up_exits_130_with_one_line(tmp_path):
    env = cli_env(tmp_path / "cache")
    study = write_study(tmp_path / "s.toml", cpu_digits_mlp_study("s", grid="seed = [0, 1]", train="epochs = 50"))
    with CLIProcess(("run", study, "--store", tmp_path / "s.db", "--quiet"), env=env, cwd=tmp_path) as cli:
        time.sleep(1.0)  # past the interpreter's start, into the imports and checks
        assert cli.proc.poll() is None, "the run ended before it could be stopped"
        cli.proc.send_signal(signal.SIGTERM)
        cli.communicate(timeout=120)
        assert wait_for_group_to_empty(cli.pid) == []
    assert cli.returncode == 130, cli.describe()
    lines = [line for line in cli.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], cli.describe()
    assert "Traceback" not in cli.stderr
