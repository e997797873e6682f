"""``vlclip``: one subcommand per pipeline stage; the only entry point dvc and Airflow use."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from vlclip import __version__
from vlclip.config import DEFAULT_PARAMS, Params, ParamsError, load_params

app = typer.Typer(
    help="VL-CLIP pipeline: ingest -> validate -> ground -> enrich -> train -> embed -> "
    "evaluate -> index -> promote. Settings come from params.yaml; run the whole chain with "
    "`dvc repro`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("vlclip")
T = TypeVar("T")

ParamsOption = Annotated[
    Path, typer.Option("--params", "-p", help="Settings file, validated before any work.")
]
QUIET_LOGGERS = (
    "great_expectations",
    "httpx",
    "urllib3",
    "filelock",
    "PIL",
    "matplotlib",
    "faiss",
)


def setup_logging(verbose: bool = False) -> None:
    # Libraries (open_clip logs to the root logger) speak at WARNING; vlclip at INFO.
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.getLogger("vlclip").setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def _params(path: Path) -> Params:
    if Path(path) != DEFAULT_PARAMS and not Path(path).exists():  # a named file must exist
        typer.secho(f"error: params file {path} not found", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        return load_params(path)
    except ParamsError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None


def _run(action: Callable[[], T]) -> T:
    """Run a stage; turn expected failures into a clear message and a non-zero exit."""
    from vlclip.stages import GateFailed

    try:
        return action()
    except GateFailed as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except (FileNotFoundError, KeyError, ValueError) as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    except RuntimeError as error:  # our own stage errors (e.g. a batch still pending)
        if not type(error).__module__.startswith("vlclip."):
            raise
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


def _layout():
    from vlclip.stages import Layout

    return Layout()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    setup_logging(verbose)


@app.command("ingest")
def ingest_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Read the catalog source (ingest.source), check every image, write data/catalog/."""
    from vlclip.stages import run_ingest

    settings = _params(params)
    manifest = _run(lambda: run_ingest(settings, _layout()))
    if manifest.num_quarantined:
        typer.echo(f"{manifest.num_quarantined} rows quarantined: data/catalog/quarantine.parquet")


@app.command("validate")
def validate_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Great Expectations gate over data/catalog/; on success publish data/validated/."""
    from vlclip.stages import run_validate

    settings = _params(params)
    _run(lambda: run_validate(settings, _layout()))
    typer.echo("validation passed: reports/validation/")


@app.command("ground")
def ground_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Crop every photo to its product (ground.detector); write data/crops/."""
    from vlclip.stages import run_ground

    settings = _params(params)
    _run(lambda: run_ground(settings, _layout()))


@app.command("enrich")
def enrich_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Write one concise product text per item (enrich.backend) to data/enriched/."""
    from vlclip.stages import run_enrich

    settings = _params(params)
    _run(lambda: run_enrich(settings, _layout()))


@app.command("train")
def train_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Contrastive fine-tuning on crops x enriched texts; checkpoint to models/."""
    from vlclip.stages import run_train

    settings = _params(params)
    _run(lambda: run_train(settings, _layout()))


@app.command("embed")
def embed_command(
    params: ParamsOption = DEFAULT_PARAMS,
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="Any catalog folder written by `vlclip ingest` (default: the "
            "pipeline's, with grounded crops and enriched texts)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: data/embeddings).")
    ] = None,
) -> None:
    """Image and text embeddings (Parquet, with ids) of every item and query photo."""
    from vlclip.stages import run_embed

    settings = _params(params)
    target = _run(lambda: run_embed(settings, _layout(), catalog, out))
    typer.echo(f"embeddings: {target}/")


@app.command("evaluate")
def evaluate_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """HITS@k, MRR, NDCG of the trained model and its untrained baseline: reports/metrics.json."""
    from vlclip.stages import run_evaluate

    settings = _params(params)
    results = _run(lambda: run_evaluate(settings, _layout()))
    for variant in ("baseline", "model"):
        for task, metrics in results[variant].items():
            shown = ", ".join(
                f"{name} {value:.3f}" for name, value in metrics.items() if name != "queries"
            )
            typer.echo(f"{variant:>8} {task:<27} {shown}")
    typer.echo("metrics: reports/metrics.json   plots: reports/plots/")
    typer.echo("retrained ablation with intervals: `make ablation` -> reports/ablation.md")


@app.command("index")
def index_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Build the faiss index over catalog item vectors in index/."""
    from vlclip.stages import run_index

    settings = _params(params)
    count = _run(lambda: run_index(settings, _layout()))
    typer.echo(f"indexed {count} items ({settings.index.kind}): index/")


@app.command("promote")
def promote_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Replace champion/ with the new model only if it beats it (promote.metric, margin)."""
    from vlclip.stages import run_promote

    settings = _params(params)
    report = _run(lambda: run_promote(settings, _layout()))
    typer.echo(f"promotion: {report['decision']} ({report['reason']}): reports/promotion.json")


@app.command("snapshot")
def snapshot_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Reference snapshot of the trained model for the drift monitor: data/reference/."""
    from vlclip.stages import run_snapshot

    settings = _params(params)
    folder = _run(lambda: run_snapshot(settings, _layout()))
    typer.echo(f"reference snapshot: {folder}")


monitor_app = typer.Typer(
    help="Drift monitoring: compare a catalog drop with the champion's reference snapshot "
    "(Evidently), write monitoring/<run>/report.html and summary.json, update "
    "monitoring/index.html and alert on-call (VLCLIP_ALERT_URLS, Apprise URLs). Without a "
    "subcommand, all four steps run.",
    invoke_without_command=True,
)
app.add_typer(monitor_app, name="monitor")

RunIdOption = Annotated[
    str | None,
    typer.Option("--run-id", help="Monitor run id (default: the UTC time and a random suffix)."),
]
StepRunIdOption = Annotated[
    str, typer.Option("--run-id", help="Monitor run id: the steps of one run share it.")
]
CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="A catalog drop: a table (CSV, Parquet, JSONL; image paths relative to it), a "
        "GroceryStore-style folder or an ingested catalog folder. Default: the pipeline's.",
    ),
]
SimulateOption = Annotated[
    bool,
    typer.Option(
        "--simulate-drift",
        help="Shift the catalog first (other type mix, darker blurred photos, longer titles): "
        "the on-call demo.",
    ),
]


OutputOption = Annotated[
    Path | None,
    typer.Option("--output-dir", help="Where runs, index.html and alerts.jsonl go "
                 "(default: monitor.output_dir)."),
]


def _monitor_params(path: Path, output_dir: Path | None) -> Params:
    settings = _params(path)
    if output_dir is None:
        return settings
    monitor = settings.monitor.model_copy(update={"output_dir": output_dir})
    return settings.model_copy(update={"monitor": monitor})


def _alert_line(record: dict | None) -> str:
    if record is None:
        return "no drift: no alert"
    state = "suppressed (same drift inside the window)" if record["suppressed"] else "raised"
    return f"alert {state}: {record['title']}"


def _summary_line(summary: dict) -> str:
    drifted = [s["name"] for s in summary["signals"] if s["drift_detected"]]
    return (
        f"drift: {', '.join(drifted)}" if drifted else "no drift"
    ) + f" (model {summary['model_version']}, {summary['current_items']} items)"


@monitor_app.callback()
def monitor_command(
    context: typer.Context,
    catalog: CatalogOption = None,
    simulate_drift: SimulateOption = False,
    run_id: RunIdOption = None,
    output_dir: OutputOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Snapshot, compare, report and alert in one go."""
    if context.invoked_subcommand is not None:
        return
    from vlclip.monitor.alerts import targets_from_env
    from vlclip.monitor.steps import new_run_id
    from vlclip.stages import (
        monitor_run_dir,
        run_monitor_alert,
        run_monitor_compare,
        run_monitor_report,
        run_monitor_snapshot,
    )

    settings, layout = _monitor_params(params, output_dir), _layout()
    run_id = run_id or new_run_id()
    _run(lambda: run_monitor_snapshot(settings, layout, run_id, catalog, simulate_drift))
    summary = _run(lambda: run_monitor_compare(settings, layout, run_id))
    index = run_monitor_report(settings)
    alert = run_monitor_alert(settings, run_id, targets_from_env())
    typer.echo(_summary_line(summary))
    typer.echo(_alert_line(alert))
    typer.echo(f"report:  {monitor_run_dir(settings, run_id) / 'report.html'}")
    typer.echo(f"history: {index}")


@monitor_app.command("snapshot")
def monitor_snapshot_command(
    run_id: StepRunIdOption,
    catalog: CatalogOption = None,
    simulate_drift: SimulateOption = False,
    output_dir: OutputOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Step 1: features and champion embeddings of the catalog drop."""
    from vlclip.stages import run_monitor_snapshot

    settings = _monitor_params(params, output_dir)
    folder = _run(
        lambda: run_monitor_snapshot(settings, _layout(), run_id, catalog, simulate_drift)
    )
    typer.echo(f"snapshot: {folder}")


@monitor_app.command("compare")
def monitor_compare_command(
    run_id: StepRunIdOption,
    output_dir: OutputOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Step 2: Evidently reports and summary.json against the champion's reference."""
    from vlclip.stages import run_monitor_compare

    settings = _monitor_params(params, output_dir)
    summary = _run(lambda: run_monitor_compare(settings, _layout(), run_id))
    typer.echo(_summary_line(summary))


@monitor_app.command("report")
def monitor_report_command(
    output_dir: OutputOption = None, params: ParamsOption = DEFAULT_PARAMS
) -> None:
    """Step 3: rebuild monitoring/index.html (every run, drift scores over time)."""
    from vlclip.stages import run_monitor_report

    typer.echo(f"history: {run_monitor_report(_monitor_params(params, output_dir))}")


@monitor_app.command("alert")
def monitor_alert_command(
    run_id: StepRunIdOption,
    output_dir: OutputOption = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Step 4: alert on-call when the run drifted (VLCLIP_ALERT_URLS; deduplicated)."""
    from vlclip.monitor.alerts import targets_from_env
    from vlclip.stages import run_monitor_alert

    settings = _monitor_params(params, output_dir)
    typer.echo(_alert_line(_run(lambda: run_monitor_alert(settings, run_id, targets_from_env()))))


ablation_app = typer.Typer(
    help="The retrained ablation: one model per variant (full photos or crops x raw or "
    "enriched text by default; models, locks and texts as configured) and seed, summarised "
    "with 95% intervals. Run it all with `make ablation`.",
    no_args_is_help=True,
)
app.add_typer(ablation_app, name="ablation")


@ablation_app.command("run")
def ablation_run_command(
    variant: Annotated[
        str,
        typer.Argument(
            help="A name in ablation.variants: full_raw, crops_raw, full_enriched, "
            "crops_enriched, or one defined under ablation.definitions."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Seed of init, shuffling and augmentation.")] = 0,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Train and evaluate one variant with one seed: reports/ablation/runs/VARIANT-SEED.json."""
    from vlclip.stages import run_ablation_variant

    settings = _params(params)
    record = _run(lambda: run_ablation_variant(settings, _layout(), variant, seed))
    headline = record["metrics"]["image_to_catalog"]
    typer.echo(
        f"{variant} seed {seed}: image->catalog HITS@5 {headline['hits@5']:.3f}, "
        f"MRR {headline['mrr']:.3f} ({record['seconds']:.0f} s)"
    )


@ablation_app.command("report")
def ablation_report_command(
    params: ParamsOption = DEFAULT_PARAMS,
    rows: Annotated[
        str | None,
        typer.Option(help="Print only these rows (comma-separated variant names; `untrained` "
                     "for the untrained start). The files keep every row."),
    ] = None,
    columns: Annotated[
        str | None,
        typer.Option(help="Print only these task.metric columns (comma-separated)."),
    ] = None,
) -> None:
    """Summarise the runs: reports/ablation.md and reports/ablation.json."""
    from vlclip.ablation import markdown_table, select
    from vlclip.stages import run_ablation_report

    settings = _params(params)
    summary = _run(lambda: run_ablation_report(settings, _layout()))
    picked = _run(lambda: select(summary, _names(rows), _names(columns)))
    typer.echo(markdown_table(picked))


def _names(option: str | None) -> list[str] | None:
    return [name.strip() for name in option.split(",") if name.strip()] if option else None


@app.command("experiment")
def experiment_command(
    config: Annotated[
        Path, typer.Argument(help="YAML of params.yaml sections to change, e.g. "
                             "configs/grocery_store.yaml.", exists=True, dir_okay=False)
    ],
    name: Annotated[
        str | None, typer.Option(help="Workspace name (default: the config's file name).")
    ] = None,
    run: Annotated[
        bool, typer.Option(help="Run `dvc repro` there (--no-run: only set it up).")
    ] = True,
) -> None:
    """Run the whole pipeline on params.yaml plus CONFIG in a workspace of its own
    (.vlclip-runs/NAME, sharing the DVC cache): the repository's outputs stay as they are."""
    import subprocess
    import sys

    from vlclip.orchestration import start_experiment, workspace_root

    repo = Path.cwd()
    try:
        folder = start_experiment(repo, workspace_root(repo), name or config.stem, config)
    except ParamsError as error:
        typer.secho(str(error), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(f"workspace: {folder}")
    if run:  # the stages' `vlclip` must be this installation's, activated or not
        bin_dir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run([str(bin_dir / "dvc"), "repro"], cwd=folder, env=env)
        if done.returncode:
            raise typer.Exit(done.returncode)
        typer.echo(f"metrics: {folder / 'reports/metrics.json'}")


def _print_results(frame) -> None:
    for row in frame.itertuples():
        typer.echo(f"{row.score:7.3f}  {row.item_id:<24} {row.product_type:<20} {row.title}")


@app.command("recommend")
def recommend_command(
    item_id: Annotated[str, typer.Argument(help="A catalog item id.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many items.")] = 5,
) -> None:
    """Print the items most similar to ITEM_ID."""
    from vlclip.stages import recommend

    _print_results(_run(lambda: recommend(item_id, k, _layout())))


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="Free text, e.g. 'red striped soda can'.")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many items.")] = 5,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Print the catalog items that best match a text query."""
    from vlclip.stages import search_text

    if not query.strip():
        typer.secho("error: the query is empty; describe the product", fg=typer.colors.RED,
                    err=True)
        raise typer.Exit(2)
    settings = _params(params)
    _print_results(_run(lambda: search_text(query, k, settings, _layout())))
