"""The generated documentation (``make docs``: agent.docs.generate); never imported at run time.

- :mod:`agent.docs.configuration`: docs/CONFIGURATION.md, from the config schema and the command table.
- :mod:`agent.docs.collectors`: docs/COLLECTORS.md, from each collector's spec.
- :mod:`agent.docs.markdown`: the tables and cells both pages share.
"""
