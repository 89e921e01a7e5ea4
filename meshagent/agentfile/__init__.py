"""The agent file: the YAML an author writes, read into a checked ``AgentSpec``.

- ``spec``: the pydantic models of an agent file, every field typed and documented.
- ``loader``: YAML to specs, every problem located as file:line:column and field path.
- ``checks``: what needs more than the file's own fields: the connector registry, the environment.
- ``schema``: the JSON Schema editors validate agent files with.
- ``cron``: cron expressions, intervals and timezones of the triggers.
- ``scaffold``: ``meshagent init``'s starter agent file.
"""
