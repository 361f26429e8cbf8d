"""The Ray Tune search over BRefine's λ, w and stage count, and its decision.

``tune/search.py`` is the entry point (options: :mod:`tune.options`); the
search itself is in :mod:`tune.driver`, its two stages (the search, then the
confirmation runs) in :mod:`tune.stages` and :mod:`tune.confirm`, one Tune
experiment in :mod:`tune.experiment`, a trial in :mod:`tune.trial`, the search
space in :mod:`tune.space`, which configurations are confirmed in
:mod:`tune.selection`, the decision's statistics in :mod:`tune.decision`, the
MLflow parent/child bookkeeping in :mod:`tune.runs`, names in
:mod:`tune.names`, the terminal in :mod:`tune.progress`, and the report written
at the end in :mod:`tune.report`, :mod:`tune.decision_report`,
:mod:`tune.figures` and :mod:`tune.publish`.
"""
