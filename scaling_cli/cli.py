"""The `scalefit` command: parse options, call one library function, render the result.

Every error is turned into one `Error: ...` line on stderr in one place, `ScalefitGroup.main`.

No `from __future__ import annotations` here: typer reads every command's annotations at start-up, and
as strings each had to be evaluated (25 ms of every command, against 7 ms as objects).
"""

import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x vendors click; older typer uses the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_FIT_FAILED,
    EXIT_NOT_CONVERGED,
    ScalefitError,
    ScalefitWarning,
    cli_messages,
)

DEBUG_ENV = "SCALEFIT_DEBUG"
# Old option names still accepted, rewritten before parsing so that --help shows only the new ones.
HIDDEN_ALIASES = {"--configs": "--join"}
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".gz", ".bz2",
                  ".xz")
FORM_SUFFIXES = (".yaml", ".yml")


def _rewrite_aliases(args: list[str]) -> list[str]:
    """`--configs FILE` (and `--configs=FILE`) become `--join FILE`; everything after `--` is left alone."""
    out = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        name, eq, value = arg.partition("=")
        out.append(HIDDEN_ALIASES[name] + eq + value if name in HIDDEN_ALIASES else arg)
    return out


class ScalefitGroup(TyperGroup):
    """Runs a command and reports failures as a single line: `Error: <message>`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = _rewrite_aliases(list(sys.argv[1:] if args is None else args))
        try:
            with warnings.catch_warnings(), cli_messages():
                # soft problems are shown in the report; Python's warning lines would repeat them
                warnings.simplefilter("ignore", ScalefitWarning)
                # numpy's overflow and invalid-value warnings are handled where they matter (rows
                # marked bad, steps rejected); the user never sees them
                warnings.simplefilter("ignore", RuntimeWarning)
                code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                    standalone_mode=False, **extra)
        except ScalefitError as exc:
            _fail(str(exc), exc.exit_code)
        except click_exceptions.NoArgsIsHelpError as exc:
            typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(EXIT_BAD_INPUT)
        except click_exceptions.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except typer.Abort:
            _fail("interrupted", 130)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except MemoryError:
            _fail("out of memory: the table, or the computation it asks for (rows x grid points x "
                  "resamples), is too large for this machine; try fewer rows, --n or --jobs", EXIT_BAD_INPUT)
        except Exception as exc:  # a bug: say so in one line, keep the traceback for debugging
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"internal error ({type(exc).__name__}: {exc}); this is a bug in scalefit, please "
                  f"report it (set {DEBUG_ENV}=1 to see the traceback)", EXIT_FIT_FAILED)
        sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    line = " ".join(str(message).split())
    sys.stderr.write(f"Error: {line}\n")
    sys.stderr.flush()
    sys.exit(code)


app = typer.Typer(
    cls=ScalefitGroup,
    name="scalefit",
    help="Fit width / depth / data scaling laws of neural networks, with honest error bars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"scalefit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Fit width / depth / data scaling laws of neural networks, with honest error bars."""


# ---------------------------------------------------------------- options shared by the commands

DataArg = Annotated[Path, typer.Argument(help="Table of runs: .csv, .tsv, .jsonl, .json or .parquet.",
                                         show_default=False)]
FormOpt = Annotated[str, typer.Option("--form", help="Built-in form: decomposed or chinchilla.")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="A form written in YAML, or the name of a shipped one (`scalefit forms` lists them); "
                     "overrides --form.")]
ObjectiveOpt = Annotated[str | None, typer.Option(
    "--objective", help="log-ls (sum of squared log errors; default), ls, or huber (on log errors).")]
DeltaOpt = Annotated[float | None, typer.Option("--delta", help="Huber delta (default 1e-3).")]
ExcludeOpt = Annotated[int, typer.Option(
    "--exclude-top-loss", min=0,
    help="Keep rows whose loss is strictly below the K-th highest (ties drop more).")]
ColumnOpt = Annotated[list[str] | None, typer.Option(
    "--column", help="ROLE=NAME: which column plays a role (width, depth, tokens, loss, params, "
                     "flops, group). Repeatable.")]
FormatOpt = Annotated[str | None, typer.Option(
    "--format", help="csv, tsv, jsonl, json or parquet (default: from the extension).")]
ConfigsOpt = Annotated[Path | None, typer.Option(
    "--join", metavar="FILE", help="An architecture table (width, depth per model) to join onto DATA "
                                   "(--configs is an old name for it).")]
OnOpt = Annotated[str | None, typer.Option(
    "--on", help="Join key for --join: KEY, or LEFT=RIGHT when the names differ.")]
DropMissingOpt = Annotated[bool, typer.Option(
    "--drop-missing", help="Drop rows with empty cells in the columns used (default: an error).")]
JsonOpt = Annotated[str | None, typer.Option(
    "--json", help="Write the result as JSON to PATH ('-' for stdout, and nothing else there).")]
PlotDirOpt = Annotated[Path | None, typer.Option("--plot-dir", help="Save figures into DIR.")]
PlotFormatOpt = Annotated[str, typer.Option("--plot-format", help="png, pdf or svg (any case).",
                                            callback=lambda value: value.lower())]
FixOpt = Annotated[list[str] | None, typer.Option(
    "--fix", help="NAME=VALUE: hold a parameter at a value (e.g. --fix L0=1.69). Repeatable.")]
BoundOpt = Annotated[list[str] | None, typer.Option(
    "--bound", help="NAME=LO:HI: the range a parameter may take; leave a side empty to keep the form's "
                    "(e.g. --bound alpha_l=0:3). Repeatable.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print no report (errors still).")]
GroupOpt = Annotated[str | None, typer.Option(
    "--group", help="Column whose rows belong to one run (checkpoints), or COL1,COL2 whose combination "
                    "does (default: a column named group, run, run_name, run_id, model or model_name).")]
ScaleOpt = Annotated[list[str] | None, typer.Option(
    "--scale", help="ROLE=FACTOR: multiply a column, e.g. --scale tokens=1e9 when tokens are in "
                    "billions. Repeatable.")]
MinOpt = Annotated[list[str] | None, typer.Option(
    "--min", help="ROLE=VALUE: keep rows with at least this value, e.g. --min tokens=5e9 (after "
                  "--scale). Repeatable.")]
MaxOpt = Annotated[list[str] | None, typer.Option(
    "--max", help="ROLE=VALUE: keep rows with at most this value. Repeatable.")]
LastOpt = Annotated[bool, typer.Option(
    "--last-per-group", help="Keep each run's row with the most tokens (final losses only).")]


@dataclass(frozen=True)
class TableOptions:
    """How to read DATA: the options every command shares."""

    format: str | None = None
    columns: tuple[str, ...] = ()
    configs: Path | None = None
    on: str | None = None
    exclude_top_loss: int = 0
    drop_missing: bool = False
    group: str | None = None
    scale: tuple[str, ...] = ()
    min_values: tuple[str, ...] = ()
    max_values: tuple[str, ...] = ()
    last_per_group: bool = False

    def load(self, path: Path, form):
        from .errors import DataError
        from .io import load_runs

        if self.configs is not None and self.configs.suffix.lower() in FORM_SUFFIXES:
            raise DataError(f"{self.configs} looks like a form (YAML), but --join takes a table of "
                            f"architectures to join onto DATA; for a form use --config {self.configs}")

        return load_runs(path, require=form.required_columns(), format=self.format,
                         columns=list(self.columns), configs=self.configs, on=self.on,
                         exclude_top_loss=self.exclude_top_loss, drop_missing=self.drop_missing,
                         response=form.response_columns()[0], positive=form.positive_columns(),
                         **self.row_options())

    def row_options(self) -> dict:
        """The keywords of `load_runs` that pick rows and groups."""
        return {"group": self.group, "scale": list(self.scale), "min_values": list(self.min_values),
                "max_values": list(self.max_values), "last_per_group": self.last_per_group}


def resolve_form(name: str, config: Path | None):
    """The form chosen by --config (a YAML file, or the name of a shipped form) or else --form."""
    if config is not None:
        from .errors import SpecError
        from .forms import shipped_form_path
        from .spec import load_form

        if config.suffix.lower() in TABLE_SUFFIXES:
            raise SpecError(f"{config} looks like a table, but --config takes a form written in YAML; to "
                            f"join an architecture table onto DATA use --join {config} --on KEY")
        if not config.exists() and shipped_form_path(str(config)) is not None:
            config = shipped_form_path(str(config))
        return load_form(config)
    from .forms import get_form

    return get_form(name)


def console_for(json_path: str | None, quiet: bool):
    """Where the human report goes: stdout, or stderr when JSON goes to stdout; None when quiet."""
    if quiet:
        return None
    from rich.console import Console

    return Console(stderr=json_path == "-", highlight=False)


PLOT_FORMATS = ("png", "pdf", "svg")


def check_outputs(plot_format: str, *paths: str | Path | None, plot_dir: Path | None = None) -> None:
    """Check the plot format, that every output path can be written and that --plot-dir is (or can
    be made) a directory, before any work is done."""
    from .report import check_plot_dir, check_writable

    if plot_format not in PLOT_FORMATS:
        raise typer.BadParameter(f"--plot-format must be one of {', '.join(PLOT_FORMATS)}, not "
                                 f"'{plot_format}'")
    for path in paths:
        if path is not None and str(path) != "-":
            check_writable(path)
    if plot_dir is not None:
        check_plot_dir(plot_dir)


def parameter_options(fix: list[str] | None, bound: list[str] | None
                      ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """--fix NAME=VALUE and --bound NAME=LO:HI as {name: value} and {name: (lo, hi)} (NaN: keep the
    form's side); the library checks the names against the form."""
    from .errors import SpecError

    def number(text: str, option: str, item: str) -> float:
        try:
            return float(text)
        except ValueError:
            raise SpecError(f"{option} {item}: '{text}' is not a number") from None

    fixed, bounds = {}, {}
    for item in fix or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SpecError(f"--fix takes NAME=VALUE, not '{item}'")
        fixed[name.strip()] = number(value.strip(), "--fix", item)
    for item in bound or ():
        name, sep, rng = item.partition("=")
        lo, colon, hi = rng.partition(":")
        if not sep or not colon or not name.strip():
            raise SpecError(f"--bound takes NAME=LO:HI (a side may be empty), not '{item}'")
        bounds[name.strip()] = tuple(math.nan if not s.strip() else number(s.strip(), "--bound", item)
                                     for s in (lo, hi))
    return fixed, bounds


def load_for(data: Path, form: str, config: Path | None, objective: str | None, delta: float | None,
             table: TableOptions):
    """The form, the objective and the runs a command works on; the cheap checks come first."""
    from .objectives import choose_objective

    the_form = resolve_form(form, config)
    the_objective = choose_objective(the_form, objective, delta)
    return the_form, the_objective, table.load(data, the_form)


def write_outputs(result, console, json_path: str | None, plot_dir: Path | None, plot_format: str,
                  figures) -> None:
    """After the report: the figures (`figures(result)`, made only when asked), then the JSON document
    with this run's id and time, last, so that a run that fails leaves no JSON of its own; a JSON
    file from an earlier run that was not replaced is named on stderr."""
    from .report import run_record, write_json

    doc = result.to_dict() if json_path else None
    try:
        if plot_dir is not None:
            save_plots(plot_dir, plot_format, figures(result), console)
    except BaseException:
        if json_path and json_path != "-" and Path(json_path).exists():
            sys.stderr.write(f"note: {json_path} was not replaced: it holds an earlier run's result\n")
        raise
    if json_path:
        write_json(json_path, {**doc, "run": run_record()})


def plot_figures(name: str):
    """`plot.<name>` as a figures function for `write_outputs`, importing the plot module only when
    figures are drawn: a run without --plot-dir does not pay for it."""
    def figures(result):
        from . import plot

        return getattr(plot, name)(result)

    return figures


def save_plots(plot_dir: Path, plot_format: str, figures, console) -> None:
    from .plot import save_figures

    skipped: list[str] = []
    written = save_figures(figures, plot_dir, plot_format, skipped)
    if console is not None:
        for path in written:
            console.print(f"wrote {path}", style="dim", markup=False)
    for line in skipped:
        sys.stderr.write(f"warning: figure not drawn: {line}\n")


# ---------------------------------------------------------------- commands


@app.command()
def fit(
    data: DataArg,
    form: FormOpt = "decomposed",
    config: ConfigOpt = None,
    objective: ObjectiveOpt = None,
    delta: DeltaOpt = None,
    exclude_top_loss: ExcludeOpt = 0,
    column: ColumnOpt = None,
    format: FormatOpt = None,
    configs: ConfigsOpt = None,
    on: OnOpt = None,
    drop_missing: DropMissingOpt = False,
    group: GroupOpt = None,
    scale: ScaleOpt = None,
    min_value: MinOpt = None,
    max_value: MaxOpt = None,
    last_per_group: LastOpt = False,
    errors: Annotated[str, typer.Option(
        "--errors", help="auto (cluster-robust over runs when the table has a group column, else iid), "
                         "iid or cluster.")] = "auto",
    json_path: JsonOpt = None,
    plot_dir: PlotDirOpt = None,
    plot_format: PlotFormatOpt = "png",
    quiet: QuietOpt = False,
    fix: FixOpt = None,
    bound: BoundOpt = None,
    ci: Annotated[str, typer.Option(
        "--ci", help="Intervals: jacobian (t intervals from the Jacobian) or profile (profile "
                     "likelihood as well, asymmetric where the law is).")] = "jacobian",
) -> None:
    """Fit a scaling law to a table of runs: parameters with Jacobian (or, on checkpoint tables,
    cluster-robust) errors, statistics, plots, JSON."""
    from .fitting import fit as fit_runs
    from .report import render_fit

    check_outputs(plot_format, json_path, plot_dir=plot_dir)
    if ci not in ("jacobian", "profile"):
        raise typer.BadParameter(f"--ci must be jacobian or profile, not '{ci}'")
    table = TableOptions(format, tuple(column or ()), configs, on, exclude_top_loss, drop_missing, group,
                         tuple(scale or ()), tuple(min_value or ()), tuple(max_value or ()), last_per_group)
    fixed, bounds = parameter_options(fix, bound)
    the_form, the_objective, runs = load_for(data, form, config, objective, delta, table)
    result = fit_runs(runs, the_form, the_objective, fixed=fixed, bounds=bounds, errors=errors)
    if ci == "profile":
        result = result.with_profile()
    console = console_for(json_path, quiet)
    if console is not None:
        render_fit(result, console)
    write_outputs(result, console, json_path, plot_dir, plot_format, plot_figures("fit_figures"))
    if not result.converged:
        raise typer.Exit(EXIT_NOT_CONVERGED)


@app.command()
def compare(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Argument(
        metavar="DATA", help="Table of runs (or `data:` in --spec).", show_default=False)] = None,
    forms: Annotated[list[str] | None, typer.Argument(
        metavar="FORMS", help="Forms to compare: built-in names (decomposed, chinchilla) or YAML files.",
        show_default=False)] = None,
    spec: Annotated[Path | None, typer.Option(
        "--spec", help="A compare file (YAML) with data, forms and any option below; options given "
                       "on the command line win.")] = None,
    objective: ObjectiveOpt = None,
    delta: DeltaOpt = None,
    folds: Annotated[int, typer.Option(
        "--folds", help="Folds of cross-validation (rows of one group stay together).")] = 5,
    holdout_top: Annotated[float, typer.Option(
        "--holdout-top", help="Fraction of the largest runs held out to measure extrapolation.")] = 0.2,
    by: Annotated[str, typer.Option(
        "--by", help="Largest by flops (else 6*params*tokens), params (else 12*depth*width^2) or "
                     "tokens.")] = "flops",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random fold assignment.")] = 0,
    rank_by: Annotated[str, typer.Option(
        "--rank-by", help="extrapolation, cv, aic or bic.")] = "extrapolation",
    exclude_top_loss: ExcludeOpt = 0,
    column: ColumnOpt = None,
    format: FormatOpt = None,
    configs: ConfigsOpt = None,
    on: OnOpt = None,
    drop_missing: DropMissingOpt = False,
    group: GroupOpt = None,
    scale: ScaleOpt = None,
    min_value: MinOpt = None,
    max_value: MaxOpt = None,
    last_per_group: LastOpt = False,
    json_path: JsonOpt = None,
    plot_dir: PlotDirOpt = None,
    plot_format: PlotFormatOpt = "png",
    quiet: QuietOpt = False,
) -> None:
    """Rank forms fitted to the same rows: AIC, BIC, Akaike weight, cross-validated and extrapolation
    error."""
    from .compare import compare_forms, load_compare_spec, render_compare
    from .errors import SpecError

    check_outputs(plot_format, json_path, plot_dir=plot_dir)
    the_spec = load_compare_spec(spec) if spec is not None else None
    given = the_spec.settings if the_spec is not None else {}

    def pick(name: str, value, key: str | None = None):
        """The command line's value, else the compare file's, else the default."""
        if ctx.get_parameter_source(name).name.startswith("DEFAULT"):
            return given.get(key or name, value)
        return value

    data = data if data is not None else (the_spec.data if the_spec is not None else None)
    forms = list(forms or (the_spec.forms if the_spec is not None else ()))
    if data is None or not forms:
        raise SpecError("compare needs DATA and at least one FORM (built-in name or YAML file), or a "
                        "--spec FILE that names them")
    table = TableOptions(pick("format", format), tuple(pick("column", column, "columns") or ()), configs, on,
                         pick("exclude_top_loss", exclude_top_loss), drop_missing, group,
                         tuple(scale or ()), tuple(min_value or ()), tuple(max_value or ()), last_per_group)
    result = compare_forms(
        data, forms, objective=pick("objective", objective), delta=pick("delta", delta),
        folds=pick("folds", folds), holdout_top=pick("holdout_top", holdout_top), by=pick("by", by),
        seed=pick("seed", seed), rank_by=pick("rank_by", rank_by), load_options=vars(table))
    console = console_for(json_path, quiet)
    if console is not None:
        render_compare(result, console)
    write_outputs(result, console, json_path, plot_dir, plot_format, plot_figures("compare_figures"))


@app.command()
def bootstrap(
    data: DataArg,
    form: FormOpt = "decomposed",
    config: ConfigOpt = None,
    objective: ObjectiveOpt = None,
    delta: DeltaOpt = None,
    exclude_top_loss: ExcludeOpt = 0,
    column: ColumnOpt = None,
    format: FormatOpt = None,
    configs: ConfigsOpt = None,
    on: OnOpt = None,
    drop_missing: DropMissingOpt = False,
    n: Annotated[int, typer.Option("--n", min=2, help="Number of resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the resampling (same seed, same draws, "
                                                     "whatever --jobs is).")] = 0,
    method: Annotated[str | None, typer.Option(
        "--method", help="group (whole runs; the default when the table has a group column), case (rows; "
                         "the default otherwise), wild (wild cluster bootstrap: each run's residuals "
                         "flipped by one random weight; for few runs) or residual (residuals onto the "
                         "fitted values).", show_default=False)] = None,
    ci: Annotated[str | None, typer.Option(
        "--ci", help="Interval: studentized (bootstrap-t on each resample's cluster-robust error; the "
                     "default for group and wild), percentile (the default otherwise), bca or basic.",
        show_default=False)] = None,
    level: Annotated[float, typer.Option("--level", help="Confidence level of the intervals.")] = 0.95,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=0, help="Worker processes solving chunks of resamples (0: one per CPU when the "
                              "table and --n are big enough to gain from them).")] = 0,
    group: GroupOpt = None,
    scale: ScaleOpt = None,
    min_value: MinOpt = None,
    max_value: MaxOpt = None,
    last_per_group: LastOpt = False,
    draws: Annotated[Path | None, typer.Option(
        "--draws", help="Write every resample's parameters and status to PATH (.csv, or .parquet).")] = None,
    json_path: JsonOpt = None,
    plot_dir: PlotDirOpt = None,
    plot_format: PlotFormatOpt = "png",
    quiet: QuietOpt = False,
    fix: FixOpt = None,
    bound: BoundOpt = None,
) -> None:
    """Bootstrap a fit: refit thousands of resamples at once; standard errors and intervals beside the
    Jacobian ones."""
    from .bootstrap import BootstrapResult, progress_bar, render_bootstrap
    from .bootstrap import bootstrap as run_bootstrap

    check_outputs(plot_format, json_path, draws, plot_dir=plot_dir)
    table = TableOptions(format, tuple(column or ()), configs, on, exclude_top_loss, drop_missing, group,
                         tuple(scale or ()), tuple(min_value or ()), tuple(max_value or ()), last_per_group)
    fixed, bounds = parameter_options(fix, bound)
    the_form, the_objective, runs = load_for(data, form, config, objective, delta, table)
    console = console_for(json_path, quiet)
    with progress_bar(console) as progress:
        result = run_bootstrap(runs, the_form, the_objective, n=n, seed=seed, method=method, ci=ci,
                               level=level, jobs=jobs, progress=progress, fixed=fixed, bounds=bounds)
    if console is not None:
        render_bootstrap(result, console)
    if draws is not None:
        path = result.write_draws(draws)
        if console is not None:
            console.print(f"wrote {path}", style="dim", markup=False)
        if json_path:  # the JSON names the draws file (relative to itself) instead of inlining the draws
            from dataclasses import replace

            from .results import relative_to

            where = Path(json_path).parent if json_path != "-" else None
            result = replace(result, draws_file=relative_to(path, where) if where else str(path.resolve()))
    write_outputs(result, console, json_path, plot_dir, plot_format, BootstrapResult.figures)


@app.command()
def forms() -> None:
    """List the forms you can fit: the built-in ones (--form NAME) and the shipped YAML ones (--config
    NAME), with their formulas and references."""
    from rich.console import Console

    from .forms import SHIPPED_FORMS_DIR, form_catalog
    from .report import render_forms

    render_forms(form_catalog(), Console(highlight=False), str(SHIPPED_FORMS_DIR))


def main() -> None:
    app()


# ---------------------------------------------------------------- predict and optimize (saved fits)

FitJsonArg = Annotated[Path, typer.Argument(
    metavar="FIT.json", help="A saved fit: the JSON of `scalefit fit --json` or `scalefit bootstrap --json`.",
    show_default=False)]
LevelOpt = Annotated[float, typer.Option("--level", help="Level of the intervals.")]
OutputCsvOpt = Annotated[Path | None, typer.Option("--output", help="Also write the rows as CSV to PATH.")]


@app.command()
def predict(
    fit_json: FitJsonArg,
    at: Annotated[list[str] | None, typer.Option(
        "--at", help="One point: NAME=VALUE pairs, e.g. width=8192,depth=80,tokens=1.4T (a role, the "
                     "form's symbol or the fitted table's column). Repeatable.")] = None,
    table: Annotated[Path | None, typer.Option(
        "--table", help="A table of points, read like a table of runs; other columns are carried "
                        "through.")] = None,
    level: LevelOpt = 0.95,
    column: ColumnOpt = None,
    format: FormatOpt = None,
    output: OutputCsvOpt = None,
    json_path: JsonOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Predict the loss of new runs from a saved fit: confidence and prediction intervals, and how far
    each point lies outside the fitted data."""
    from .errors import DataError
    from .predict import load_points, parse_at
    from .report import write_frame_csv, write_json
    from .report_plan import render_prediction
    from .results import load_result

    check_outputs("png", json_path, output)
    if (at is None) == (table is None):
        raise DataError("give the points with --at NAME=VALUE,... (repeatable) or with --table FILE, "
                        "not both" if at and table else "no points: give --at NAME=VALUE,... or --table FILE")
    result = load_result(fit_json)
    points = parse_at(at) if at else load_points(result, table, format=format, columns=column)
    prediction = result.predict(points, level=level)
    console = console_for(json_path, quiet)
    if console is not None:
        render_prediction(prediction, console)
    if json_path:
        write_json(json_path, prediction.to_dict())
    if output is not None:
        path = write_frame_csv(output, prediction.to_frame())
        if console is not None:
            console.print(f"wrote {path}", style="dim", markup=False)


@app.command()
def optimize(
    fit_json: FitJsonArg,
    flops: Annotated[list[str], typer.Option(
        "--flops", help="Compute budget in FLOP (e.g. 5.76e23), or a log-spaced range START:STOP:COUNT "
                        "(e.g. 1e20:1e25:11). Repeatable.", show_default=False)],
    vocab: Annotated[float, typer.Option(
        "--vocab", help="Vocabulary size V: adds V*m embedding parameters to N = 12*l*m^2.")] = 0.0,
    width_multiple: Annotated[int, typer.Option(
        "--width-multiple", help="Trainable widths are multiples of this.")] = 1,
    min_width: Annotated[float | None, typer.Option("--min-width", help="Smallest trainable width.")] = None,
    max_width: Annotated[float | None, typer.Option("--max-width", help="Largest trainable width.")] = None,
    min_depth: Annotated[float | None, typer.Option("--min-depth", help="Smallest trainable depth.")] = None,
    max_depth: Annotated[float | None, typer.Option("--max-depth", help="Largest trainable depth.")] = None,
    max_aspect: Annotated[float | None, typer.Option(
        "--max-aspect", help="Largest width/depth of a trainable shape.")] = None,
    level: Annotated[float | None, typer.Option(
        "--level", help="Level of the intervals (a bootstrap result; default: its own).")] = None,
    output: OutputCsvOpt = None,
    json_path: JsonOpt = None,
    plot_dir: PlotDirOpt = None,
    plot_format: PlotFormatOpt = "png",
    quiet: QuietOpt = False,
) -> None:
    """Compute-optimal width, depth and tokens for a FLOP budget from a saved fit, with the best
    trainable shape and (from a bootstrap) intervals."""
    from .optimize import Constraints, parse_flops
    from .optimize import optimize as run_optimize
    from .plot import optimize_figures
    from .report import write_frame_csv
    from .report_plan import render_optimum
    from .results import load_result

    check_outputs(plot_format, json_path, output)
    budgets = parse_flops(flops)
    constraints = Constraints(width_multiple, min_width, max_width, min_depth, max_depth, max_aspect)
    result = load_result(fit_json)
    optimum = run_optimize(result, budgets, vocab=vocab, constraints=constraints, level=level)
    console = console_for(json_path, quiet)
    if console is not None:
        render_optimum(optimum, console)
    if output is not None:
        path = write_frame_csv(output, optimum.to_frame())
        if console is not None:
            console.print(f"wrote {path}", style="dim", markup=False)
    write_outputs(optimum, console, json_path, plot_dir, plot_format,
                  lambda o: optimize_figures(o, result))
