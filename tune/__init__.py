"""The Ray Tune search over BRefine's λ, w and stage count.

``tune/search.py`` is the entry point; the search itself is in
:mod:`tune.driver`, a trial in :mod:`tune.trial`, the search space in
:mod:`tune.space`, the MLflow parent/child bookkeeping in :mod:`tune.runs`,
and the report written at the end in :mod:`tune.report`.
"""
