"""Security signals as custom metrics: logins, file integrity, packages, kernel modules, privileged accounts.

One module per collector type (``logins``, ``integrity``, ``packages``, ``modules``, ``accounts``), each with
its options, DOC and SAMPLE; ``names`` (which built-in metrics a collector sends, under which names) and
``state`` (a collector's JSON state in ``state_dir``) serve all of them.
"""
