"""Configuration: the schema of agent.yaml (:mod:`.spec`), the frozen typed model (:mod:`.model`),
the loader that checks a file against both (:mod:`.load`) and the example it renders (:mod:`.sample`).

Import from the submodules: the model sits below the report and the collectors, the loader above them.
"""
