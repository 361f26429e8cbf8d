"""The end of a search, beside its Ray results and on its parent MLflow run.

Files (``<storage>/<search>/`` and the parent's ``search/`` artifacts):
``trials.parquet``, ``summary.md``, ``search.png`` (AP per searched
hyperparameter), ``pareto.png`` (accuracy against training s/iter); with a
confirmation stage ``confirmation.parquet``, ``decision.md``,
``decision.json`` and ``intervals.png``. ``best_config.py`` and
``best.json`` are the winner's, and exist only when a winner was decided;
a search without a confirmation stage (``--confirm 0``) registers its best
trial's checkpoint without an alias, which its summary calls one seed's
result, not a decision.

The parent run's tags: ``decided`` (true|false), ``winner`` (its name or
none), ``best.*`` (the search's best trial, ``best.tie`` when others had
its value); its metrics, flat-named (``segm_mAP``, ``boundary_AP``,
``train_s_per_iter``): the winner's means, or without confirmation the best
trial's last validation. A winner's best-scoring confirmation run is
registered with the alias ``champion``.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS, load_config
from brefine.driver.options import RunOptions

from .decision import Decision
from .decision_report import decision_lines, decision_record
from .figures import intervals_figure, pareto_figure, search_figure
from .names import CONFIRMS_KEY, COST_METRICS
from .report import plain, summary_markdown, write_beside_results

CHAMPION = "champion"


@dataclass
class Outcome:
    """What a search found, for its report.

    ``ranges``: the searched keys' ranges (``fixed``: the keys fixed with
    ``--set``); ``default``: the table's defaults of the searched keys;
    ``confirmed``: the confirmation runs' table (None: no confirmation stage);
    ``decision``: None without confirmation, or with fewer than two
    configurations that finished (``no_decision`` says why).
    """

    name: str
    metric: str
    objective: str
    table: Any
    best: Optional[dict]
    noise: Optional[dict]
    ranges: dict
    fixed: dict
    default: dict
    confirmed: Any = None
    decision: Optional[Decision] = None
    no_decision: str = ""


def flat_metrics(row: dict, metric: str) -> dict[str, float]:
    """A trial's validation metrics and cost by their short names (``segm_mAP``,
    ``bbox_mAP``, ``boundary_AP``, ``train_s_per_iter``): hyperparameters are params."""
    out = {metric.rsplit("/", 1)[-1]: row.get(f"last_{metric}")}
    for key, value in row.items():
        if ("/" in key and not key.startswith(("best_", "last_"))) or \
                key.startswith("boundary_AP") or key in COST_METRICS:
            out[key.rsplit("/", 1)[-1]] = value
    return {k: float(v) for k, v in out.items()
            if isinstance(v, (int, float)) and math.isfinite(v)}


def register(client, parent_id: str, trial_id: str, run: RunOptions, values: dict,
             alias: Optional[str] = None) -> Optional[dict[str, str]]:
    """Register trial ``trial_id``'s last checkpoint (and set ``alias`` on it).

    Returns:
        {"uri", "alias_uri", "checkpoint", "run"}, or None when the trial's run has no checkpoint.
    """
    from brefine.checkpoints import fetch_checkpoint
    from brefine.tracking.registry import list_model_as_output, register_model

    from .runs import find_child

    experiment_id = client.get_run(parent_id).info.experiment_id
    child = find_child(client, experiment_id, parent_id, trial_id)
    checkpoint_uri = child.data.tags.get("checkpoint_uri") if child is not None else None
    if checkpoint_uri is None:
        return None
    cfg = load_config(run.config, {**run.overrides, **values}, run.data_root)
    with tempfile.TemporaryDirectory() as tmp:
        local = fetch_checkpoint(checkpoint_uri, Path(tmp))
        version = register_model(client, child.info.run_id, local, cfg, Path(run.config).stem)
    list_model_as_output(client, parent_id, version)
    if alias:
        client.set_registered_model_alias(version.name, alias, version.version)
    return {"uri": f"models:/{version.name}/{version.version}", "checkpoint": checkpoint_uri,
            "alias_uri": f"models:/{version.name}@{alias}" if alias else "",
            "run": child.info.run_name}


def winner_runs(outcome: Outcome):
    """The winner's confirmation runs that finished, best ``metric`` first."""
    table = outcome.confirmed
    rows = table[(table[CONFIRMS_KEY] == outcome.decision.winner) &
                 (table["status"] == "FINISHED")]
    return rows.sort_values(f"last_{outcome.metric}", ascending=False, kind="stable")


def values_text(values: dict, fixed: dict) -> str:
    """``boundary_lambda=1.0, rpn_weight=0.2, num_stages=1 (fixed)``."""
    return ", ".join(f"{k}={values.get(k, fixed.get(k))}" + (" (fixed)" if k in fixed else "")
                     for k in HYPERPARAMETERS)


def decision_section(outcome: Outcome, model: Optional[dict]) -> list[str]:
    """The summary's decision lines: the decision and the champion, or why there is none
    and the default configuration to use."""
    default = f"the default configuration: {values_text(outcome.default, outcome.fixed)}"
    if outcome.decision is None:
        reason = outcome.no_decision or ("no confirmation stage (--confirm 0): the best trial "
                                         "below is one seed's result, not a decision")
        registered = f"; its checkpoint is {model['uri']}, not a champion" if model else ""
        return [f"**no decision**: {reason}{registered}. The reference is {default}."]
    if outcome.decision.winner is None:
        outcome_line = (f"Use {default}. Nothing is registered as champion and no best_config "
                        "is written.")
    elif model is None:
        outcome_line = "The winner's runs kept no checkpoint: nothing is registered."
    else:
        outcome_line = (f"champion: {model['alias_uri']} ({model['uri']}, from run "
                        f"{model['run']}; checkpoint {model['checkpoint']})")
    return decision_lines(outcome.decision, outcome.metric, outcome_line)


def decided(outcome: Outcome) -> bool:
    """Whether the search declared a winner."""
    return outcome.decision is not None and outcome.decision.winner is not None


def winner_values(outcome: Outcome) -> dict:
    """The decided winner's hyperparameters."""
    row = winner_runs(outcome).iloc[0]
    return {k: plain(row[k]) for k in HYPERPARAMETERS}


def best_files(outcome: Outcome, run: RunOptions, model: Optional[dict]) -> dict[str, bytes]:
    """``best_config.py`` and ``best.json`` of the decided winner; none without one."""
    if not decided(outcome):
        return {}
    values = winner_values(outcome)
    stats = next(r for r in outcome.decision.rows if r[0].name == outcome.decision.winner)
    record = dict(decided=True, configuration=outcome.decision.winner, values=values,
                  seeds=[plain(s) for s in winner_runs(outcome)["seed"]], metric=outcome.metric,
                  mean=stats[1].mean, interval=[stats[1].low, stats[1].high], model=model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best_config.py"
        load_config(run.config, {**run.overrides, **values}, run.data_root).dump(str(path))
        return {"best_config.py": path.read_bytes(),
                "best.json": json.dumps(record, default=str, indent=2).encode()}


def report_files(outcome: Outcome, summary: str, lines: list[str]) -> dict[str, bytes]:
    """The tables, summary, decision record and figures of the search, as bytes by name."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        outcome.table.to_parquet(tmp / "trials.parquet")
        (tmp / "summary.md").write_text(summary)
        search_figure(outcome.table, outcome.metric, outcome.ranges, tmp / "search.png")
        runs = outcome.table
        if outcome.confirmed is not None:
            outcome.confirmed.to_parquet(tmp / "confirmation.parquet")
            runs = pd.concat([runs, outcome.confirmed], ignore_index=True)
        pareto_figure(runs, outcome.metric, tmp / "pareto.png")
        if outcome.decision is not None:
            (tmp / "decision.md").write_text("\n".join(lines) + "\n")
            (tmp / "decision.json").write_text(json.dumps(
                decision_record(outcome.decision, outcome.metric), indent=2))
            intervals_figure(outcome.decision, outcome.metric, tmp / "intervals.png")
        return {p.name: p.read_bytes() for p in sorted(tmp.iterdir())}


def parent_tags_and_metrics(outcome: Outcome, model: Optional[dict], written: str
                            ) -> tuple[dict[str, str], dict[str, float]]:
    """The parent run's tags (decided, winner, best.*, the note) and flat metrics."""
    tags = {"decided": str(decided(outcome)).lower(),
            "winner": outcome.decision.winner if decided(outcome) else "none"}
    metrics: dict[str, float] = {}
    if outcome.best is not None:
        tags.update({f"best.{k}": str(outcome.best.get(k))
                     for k in ("trial_id", "name", *HYPERPARAMETERS, "seed")})
        tags["best.tie"] = str(bool(outcome.best["tied_with"])).lower()
    if decided(outcome):
        _, stats, boundary, cost = next(r for r in outcome.decision.rows
                                        if r[0].name == outcome.decision.winner)
        metrics = {outcome.metric.rsplit("/", 1)[-1]: stats.mean, "seeds": stats.n,
                   **({"boundary_AP": boundary.mean} if boundary else {}),
                   **({COST_METRICS[0]: cost} if cost is not None else {})}
    elif outcome.confirmed is None and outcome.best is not None:
        row = outcome.table.loc[outcome.table["trial_id"] == outcome.best["trial_id"]].iloc[0]
        metrics = flat_metrics({k: plain(v) for k, v in row.items()}, outcome.metric)
    prefix = "champion" if decided(outcome) else "best"
    if model:
        tags.update({f"{prefix}.model_uri": model["uri"],
                     f"{prefix}.checkpoint_uri": model["checkpoint"]})
    verdict = outcome.decision.verdict.split(". ")[0] if outcome.decision else \
        (outcome.no_decision or "no confirmation stage, no decision")
    tags["mlflow.note.content"] = "; ".join(filter(None, (
        verdict, (f"best trial {outcome.best['name']} ({values_text(outcome.best, outcome.fixed)}"
                  f", seed {outcome.best['seed']})") if outcome.best else "",
        f"results: {written}", f"model {model['alias_uri'] or model['uri']}" if model else "")))
    return tags, metrics


def publish(client, parent_id: str, run: RunOptions, outcome: Outcome) -> dict[str, Any]:
    """Register the champion (or, without confirmation, the best trial), write every
    file beside the results and on the parent, tag it; returns summary, lines, where, model."""
    from brefine.tracking.runs import metric_entities

    model = None
    if decided(outcome):
        model = register(client, parent_id, winner_runs(outcome).iloc[0]["trial_id"], run,
                         winner_values(outcome), CHAMPION)
    elif outcome.confirmed is None and outcome.best is not None:  # "where is my model"
        model = register(client, parent_id, outcome.best["trial_id"], run,
                         {k: outcome.best[k] for k in HYPERPARAMETERS})
    lines = decision_section(outcome, model)
    summary = summary_markdown(outcome.name, outcome.metric, outcome.objective, outcome.table,
                               outcome.best, outcome.noise, lines, outcome.confirmed)
    files = {**report_files(outcome, summary, lines), **best_files(outcome, run, model)}
    written = write_beside_results(run.storage, run.name, files)
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        client.log_artifacts(parent_id, tmp, "search")
    client.log_table(parent_id, data=outcome.table.drop(columns=["path"]),
                     artifact_file="search/trials.json")
    tags, metrics = parent_tags_and_metrics(outcome, model, written)
    for key, value in tags.items():
        client.set_tag(parent_id, key, value)
    if metrics:
        client.log_batch(parent_id, metrics=metric_entities(metrics, step=0))
    return dict(summary=summary, lines=lines, written=written, model=model)
