"""Any workplace tool over MCP, scoped, dry-runnable and recorded like the built-in connectors.

- ``lock``: ``mcp.lock.json``, the tools each server offered at ``meshagent mcp refresh``, so
  that validation, the schema and the loader never start a server.
- ``grants``: constraints on a tool's arguments (one of a list, a prefix, a pattern), checked
  on the parsed argument before any call.
- ``tools``: each locked tool as an ``Action`` (``NAME.TOOL``), and the registry with them.
- ``connection``: one connection per server and event loop, restarted with backoff.
- ``calls``: one call of a tool: dry run, timeout, size cap, its outcome and its record.
- ``refresh``: ``meshagent mcp refresh``, asking each server for its tools and locking them.

A server's settings, ``[mcp.NAME]`` of ``meshagent.toml``, are read by ``meshagent.config.mcp``.

This package imports the ``mcp`` SDK only where a server is started (``connection``).
"""
