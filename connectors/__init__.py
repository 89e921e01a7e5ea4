"""MeshAgent's built-in connectors. Each module exposes ``connector``, registered by entry point."""
