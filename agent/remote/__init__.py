"""Remote config: the allowed keys of the named shadow's desired state, applied live as config (docs/FLEET.md).

- :mod:`agent.remote.policy`: the allow-list; screens an untrusted desired document into changes and refusals.
- :mod:`agent.remote.merge`: the remote keys laid onto agent.yaml's raw mapping, and back out for the echo.
- :mod:`agent.remote.resolve`: a change checked through the real loader (a bad value refuses its key).
- :mod:`agent.remote.store`: what is applied, persisted in state_dir (``remote-config.json``; the file alone,
  for ``status``, in :mod:`agent.remote.file`).
- :mod:`agent.remote.outcome`: what the consumers get (the shadow echoes it).
- :mod:`agent.remote.engine`: the one object the loop, ``run``, ``check`` and ``config`` use.
"""
