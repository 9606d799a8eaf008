"""``sweeper`` command line: run, demo, validate, resume, rescore, report, score, status.

Exit codes: 0 success, 1 a trial failed, 2 bad input (reported before Ray starts or any MLflow run is created).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sweeper.config import ConfigError, SweepConfig, bundled_config, load_config, preflight

EXIT_OK, EXIT_TRIAL_FAILED, EXIT_BAD_INPUT = 0, 1, 2
HELP_ADDRESS = (
    "Ray cluster address (default: RAY_ADDRESS, else a new local Ray; 'auto': the cluster `ray start` started on "
    "this machine)"
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, value parsed as YAML (e.g. --set train.epochs=1); repeatable",
    )


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="start the sweep afresh even if a sweep of this name exists (default: skip finished trials)",
    )


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    p.add_argument("--report-dir", default=None, help="where the report goes (default: ./reports/<sweep name>)")
    p.add_argument(
        "--report-detail", choices=("none", "summary", "all"), default="summary", help="how much the report draws"
    )


def _add_cluster(p: argparse.ArgumentParser) -> None:
    _add_verbose(p, argparse.SUPPRESS)
    p.add_argument("--address", default=None, help=HELP_ADDRESS)
    p.add_argument("--storage-path", default=None, help="where Tune keeps trial state (default ~/ray_results)")


def _add_verbose(p: argparse.ArgumentParser, default: object) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="show the full logs (Ray Train's checkpoint notices, MLflow's download bars, Ray's auth notice)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeper", description=__doc__.splitlines()[0])
    _add_verbose(parser, 0)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the sweep a config describes")
    run.add_argument("config", help="path of a sweep YAML (e.g. experiments/configs/demo.yaml)")
    _add_common(run)
    _add_force(run)
    _add_report(run)
    _add_cluster(run)
    demo = sub.add_parser("demo", help="run the bundled demo sweep (digits, tiny) on this machine")
    _add_common(demo)
    _add_force(demo)
    _add_report(demo)
    _add_cluster(demo)
    val = sub.add_parser("validate", help="check a config and print its trials")
    val.add_argument("config")
    _add_common(val)
    rescore = sub.add_parser(
        "rescore",
        help="add metrics to the finished trials of an experiment from their "
        "logged embeddings (same runs, no retraining)",
    )
    rescore.add_argument("experiment", help="MLflow experiment name")
    rescore.add_argument("--metrics", required=True, help="comma-separated metric names, e.g. mmd,chamfer")
    rescore.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or MLflow's default")
    rescore.add_argument("--workers", type=int, default=None, help="parallel Ray tasks (default: the cluster's CPUs)")
    rescore.add_argument("--address", default=None, help=HELP_ADDRESS)
    report = sub.add_parser(
        "report", help="write an HTML report of an experiment and log its figures to the sweep's parent run"
    )
    report.add_argument("experiment", help="MLflow experiment name")
    report.add_argument("--out", required=True, help="output folder (index.html + figures/)")
    report.add_argument("--sweep", default=None, help="only this sweep (default: every sweep of the experiment)")
    report.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI or MLflow's default")
    score = sub.add_parser(
        "score",
        help="score embeddings made anywhere (files) like a trial: sweeper score CONFIG, or "
        "sweeper score --reference REF --eval EVAL --train-class C",
    )
    score.add_argument("config", nargs="?", default=None, help="a score config (a list of embedding sets)")
    score.add_argument("--reference", help="the training class's training cloud: one embedding file")
    score.add_argument(
        "--eval", help="the evaluation clouds: a folder (one file per class), a table with a class column, or an .npz"
    )
    score.add_argument("--train-class", help="the evaluation class that is the baseline")
    score.add_argument("--model", default=None, help="model name to log (default: imported)")
    score.add_argument("--experiment", default=None, help="MLflow experiment (default: sweeper-score)")
    score.add_argument("--name", default=None, help="sweep name (default: score-<eval stem>)")
    score.add_argument("--no-report", action="store_true", help="do not write the HTML report at the end")
    score.add_argument("--report-dir", default=None, help="where the report goes (default: ./reports/<sweep name>)")
    score.add_argument("--address", default=None, help=HELP_ADDRESS)
    _add_common(score)
    status = sub.add_parser("status", help="where a sweep stands: one line per trial, totals, ETA (starts no Ray)")
    status.add_argument("name", help="the sweep's name")
    status.add_argument("--experiment", default=None, help="look the sweep up in this MLflow experiment")
    status.add_argument("--tracking-uri", default=None, help="with --experiment; default: MLFLOW_TRACKING_URI")
    status.add_argument("--storage-path", default=None, help="where Tune keeps trial state (default ~/ray_results)")
    report.add_argument(
        "--detail",
        choices=("none", "summary", "all"),
        default="summary",
        help="none: the index only; summary (default): + a page per model and metric with its tables and heatmaps; "
        "all: + every trial's bootstrap histograms and embedding PCAs",
    )
    resume = sub.add_parser("resume", help="resume an interrupted sweep by name")
    resume.add_argument("name")
    _add_cluster(resume)
    return parser


def _prepare(path: str, overrides: list[str]) -> tuple[SweepConfig, str]:
    """Everything that can fail on bad input, before Ray or MLflow are touched: config, data, tracking store."""
    from sweeper import tracking

    cfg = load_config(path, overrides)
    preflight(cfg)
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    try:
        tracking.check_tracking(uri)
    except tracking.TrackingError as exc:
        raise ConfigError(str(exc)) from None
    return cfg, uri


def _run(path: str, args: argparse.Namespace) -> int:
    cfg, uri = _prepare(path, args.overrides)
    from sweeper.tune import init_ray, plan_sweep, run_sweep

    plan = plan_sweep(cfg, uri, force=args.force)
    init_ray(args.address)
    code = run_sweep(cfg, uri, storage=args.storage_path, plan=plan)
    if not args.no_report:
        out = args.report_dir or str(Path("reports") / cfg.name)
        try:
            write_report(cfg.experiment, out, uri, sweep=cfg.name, detail=args.report_detail)
        except Exception as exc:
            logging.getLogger("sweeper").warning(
                "report not written (%s); rerun: sweeper report %s --out %s", exc, cfg.experiment, out
            )
    return code


def write_report(experiment: str, out: str, uri: str, sweep: str | None = None, detail: str = "summary") -> None:
    """``analysis.report.build_report`` into ``out``, then its page and figures logged to the sweep's parent run(s)
    under ``report/`` so they show in the MLflow UI."""
    from mlflow.tracking import MlflowClient

    from analysis.report import build_report

    result = build_report(experiment, out, uri, sweep=sweep, detail=detail)
    client = MlflowClient(uri)
    for parent in result["parent_run_ids"]:
        for page in result.get("pages", [result["index"]]):  # index.html and the detail pages
            client.log_artifact(parent, str(page), "report")
        client.log_artifacts(parent, str(Path(result["index"]).parent / "figures"), "report/figures")
    logging.getLogger("sweeper").info(
        "report: %s (%d figures), logged to parent run(s) %s",
        result["index"],
        len(result["figures"]),
        ", ".join(result["parent_run_ids"]),
    )


def _score(args: argparse.Namespace) -> int:
    """``sweeper score``: read and check every file, then score each set as a Ray task and log it like a trial."""
    from sweeper import score_import, tracking

    shortcut = [args.reference, args.eval, args.train_class]
    if args.config is not None:
        if any(shortcut):
            raise ConfigError("give either a score config or --reference/--eval/--train-class, not both")
        cfg = score_import.load_score_config(args.config, args.overrides)
    elif all(shortcut):
        cfg = score_import.shortcut_config(args)
    else:
        raise ConfigError("sweeper score needs a config, or all of --reference, --eval and --train-class")
    sets = score_import.prepare(cfg)
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri)
    try:
        tracking.check_tracking(uri)
    except tracking.TrackingError as exc:
        raise ConfigError(str(exc)) from None
    from sweeper.tune import init_ray

    init_ray(args.address)
    code = score_import.run_score_sweep(cfg, sets, uri)
    if not args.no_report:
        out = args.report_dir or str(Path("reports") / cfg.name)
        try:
            write_report(cfg.experiment, out, uri, sweep=cfg.name)
        except Exception as exc:
            logging.getLogger("sweeper").warning("report not written (%s)", exc)
    return code


def _validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    preflight(cfg)
    trials = cfg.trials()
    print(f"config {args.config} is valid: sweep {cfg.name!r}, experiment {cfg.experiment!r}, {len(trials)} trials")
    if not cfg.is_clustering:
        from sweeper.bootstrap_plan import describe

        print(f"  {describe(cfg)}")
    for spec in trials:
        if cfg.is_clustering:
            print(f"  {spec.key}")
            continue
        s = cfg.settings_for(spec)
        print(f"  {spec.key}  (epochs={s.epochs}, lr={s.lr:g}, {s.optimizer}, schedule={s.schedule})")
    return EXIT_OK


def _rescore(args: argparse.Namespace) -> int:
    from analysis.load import finished_trial_runs
    from sweeper import tracking
    from sweeper.config import known_scores

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    known = known_scores()
    bad = [m for m in metrics if m not in known]
    if not metrics or bad:
        raise ConfigError(f"unknown metric(s) {bad or args.metrics!r}; valid: {', '.join(known)}")
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    try:
        tracking.check_tracking(uri)
        if not finished_trial_runs(args.experiment, uri):
            raise ConfigError(f"experiment {args.experiment!r} has no finished trial runs at {uri}")
    except (tracking.TrackingError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    import ray

    from sweeper.rescore import rescore
    from sweeper.tune import init_ray

    init_ray(args.address)
    workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    report = rescore(args.experiment, metrics, tracking_uri=uri, workers=workers)
    logging.getLogger("sweeper").info(
        "rescore: %d run(s) updated, %d already complete", len(report.updated), len(report.unchanged)
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from sweeper import progress

    progress.configure(args.verbose)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "run":
            return _run(args.config, args)
        if args.command == "demo":
            return _run(str(bundled_config("demo")), args)
        if args.command == "report":
            from sweeper import tracking

            uri = tracking.resolve_tracking_uri(args.tracking_uri)
            try:
                tracking.check_tracking(uri)
            except tracking.TrackingError as exc:
                raise ConfigError(str(exc)) from None
            try:
                write_report(args.experiment, args.out, uri, sweep=args.sweep, detail=args.detail)
            except ValueError as exc:  # unknown experiment / sweep: the message lists what exists
                raise ConfigError(str(exc)) from None
            return EXIT_OK
        if args.command == "rescore":
            return _rescore(args)
        if args.command == "score":
            return _score(args)
        if args.command == "status":
            from sweeper.status import format_status, sweep_status

            trials, parent = sweep_status(
                args.name, experiment=args.experiment, tracking_uri=args.tracking_uri, storage=args.storage_path
            )
            print(format_status(args.name, trials, parent))
            return EXIT_OK
        if args.command == "resume":
            from sweeper.tune import init_ray, load_state, resume_sweep

            state = load_state(args.name, args.storage_path)  # before Ray starts; a local folder or a bucket URI
            init_ray(args.address)
            return resume_sweep(args.name, storage=args.storage_path, state=state)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"sweeper: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
