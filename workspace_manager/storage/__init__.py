"""The daemon's records: runs, their events and logs, schedule and sensor state, ticks.

`base.Storage` is the one interface; `sqlite.SqliteStorage` the embedded default;
`writer.AsyncStorage` the manager's off-loop wrapper; `paths.open_storage` where it lives.
"""
