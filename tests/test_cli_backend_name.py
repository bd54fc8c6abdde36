"""`fglang fit -b nuts` (Stan's and NumPyro's name) says which backend that is."""

from __future__ import annotations

from typer.testing import CliRunner

from fglang.cli import app


def test_another_tools_name_for_a_backend_is_named_in_the_cli_error(tmp_path):
    model, data = tmp_path / "m.fg", tmp_path / "d.json"
    model.write_text("model m\nvar x: real ~ normal(0, 1)\n")
    data.write_text("{}")
    r = CliRunner().invoke(app, ["fit", str(model), "-d", str(data), "-b", "NUTS", "-q"])
    assert r.exit_code == 2 and "got 'NUTS' ('NUTS' is --backend mcmc here)" in r.output, r.output
    r = CliRunner().invoke(app, ["fit", str(model), "-d", str(data), "-b", "xyz", "-q"])
    assert r.exit_code == 2 and "got 'xyz'" in r.output and " is --backend" not in r.output, r.output
