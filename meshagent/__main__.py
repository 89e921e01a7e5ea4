"""`python -m meshagent`: the same as the `meshagent` command."""

from meshagent.cli import app

app(prog_name="meshagent")
