"""SQLite persistence: a small database core and one store per aggregate.

`database` (with `writer`, `connection_thread`, `transaction`, `opening`) runs SQL on its own
threads; `machines`, `auth` and `jobs` hold the SQL of their aggregate; `errors` is what they
raise. The schema lives in `agent.migrations`.
"""
