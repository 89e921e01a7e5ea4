"""Writes a person approves first: staged by a run, asked for in Slack, decided, executed once.

- ``staged``: staging a write, the approver's decision, and its execution under the grant.
- ``asks``: the Slack message that shows a staged write as it would land, with its buttons.
"""
