"""``--track mlflow`` where the mlflow package cannot be imported: exit 2 with one line
that says how to install it, before anything is trained or written.

The package is hidden from the command by a directory first on its path whose ``mlflow``
fails to import exactly as an absent one does (``ModuleNotFoundError`` naming it); this
runs whether or not mlflow is installed here."""

from __future__ import annotations

import os

from cli_helpers import cli_env, cpu_digits_mlp_study, run_cli, write_study

EXIT_USAGE = 2


def test_track_mlflow_without_mlflow_is_one_line_exit_2(tmp_path):
    hidden = tmp_path / "hide-mlflow" / "mlflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'mlflow\'", name="mlflow")\n')
    env = cli_env(tmp_path / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(hidden.parent), *filter(None, [env.get("PYTHONPATH")])])
    study = write_study(tmp_path / "s.toml", cpu_digits_mlp_study("s", grid="seed = [0]"))
    for how in (("--track", "mlflow"), ()):
        if not how:  # the study's own [tracking] section asks for it
            study.write_text(study.read_text() + '\n[tracking]\nmlflow = "sqlite:///mlruns.db"\n')
        cli = run_cli("run", study, "--store", tmp_path / "runs.db", *how, env=env, cwd=tmp_path)
        assert cli.returncode == EXIT_USAGE, cli.describe()
        lines = cli.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs the mlflow package" in lines[0] and "pip install" in lines[0], cli.stderr
        assert not (tmp_path / "runs.db").exists()
