"""`python -m meshagent`: the same as the `meshagent` command."""

from meshagent.cli.main import app

app(prog_name="meshagent")
