"""The `scalefit` command: parse options, call one library function, render the result.

Every error is turned into one `Error: ...` line on stderr in one place, `ScalefitGroup.main`.
"""

from __future__ import annotations

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

from .errors import EXIT_BAD_INPUT, EXIT_FIT_FAILED, EXIT_NOT_CONVERGED, ScalefitError, ScalefitWarning

DEBUG_ENV = "SCALEFIT_DEBUG"


class ScalefitGroup(TyperGroup):
    """Runs a command and reports failures as a single line: `Error: <message>`."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            with warnings.catch_warnings():
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
    "--config", help="A form written in YAML (see configs/); overrides --form.")]
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
    "--configs", help="An architecture table (width, depth per model) to join onto DATA.")]
OnOpt = Annotated[str | None, typer.Option(
    "--on", help="Join key for --configs: KEY, or LEFT=RIGHT when the names differ.")]
DropMissingOpt = Annotated[bool, typer.Option(
    "--drop-missing", help="Drop rows with empty cells in the columns used (default: an error).")]
JsonOpt = Annotated[str | None, typer.Option(
    "--json", help="Write the result as JSON to PATH ('-' for stdout, and nothing else there).")]
PlotDirOpt = Annotated[Path | None, typer.Option("--plot-dir", help="Save figures into DIR.")]
PlotFormatOpt = Annotated[str, typer.Option("--plot-format", help="png, pdf or svg.")]
FixOpt = Annotated[list[str] | None, typer.Option(
    "--fix", help="NAME=VALUE: hold a parameter at a value (e.g. --fix L0=1.69). Repeatable.")]
BoundOpt = Annotated[list[str] | None, typer.Option(
    "--bound", help="NAME=LO:HI: the range a parameter may take; leave a side empty to keep the form's "
                    "(e.g. --bound alpha_l=0:3). Repeatable.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print no report (errors still).")]


@dataclass(frozen=True)
class TableOptions:
    """How to read DATA: the options every command shares."""

    format: str | None = None
    columns: tuple[str, ...] = ()
    configs: Path | None = None
    on: str | None = None
    exclude_top_loss: int = 0
    drop_missing: bool = False

    def load(self, path: Path, form):
        from .io import load_runs

        return load_runs(path, require=form.required_columns(), format=self.format,
                         columns=list(self.columns), configs=self.configs, on=self.on,
                         exclude_top_loss=self.exclude_top_loss, drop_missing=self.drop_missing,
                         response=form.response_columns()[0], positive=form.positive_columns())


def resolve_form(name: str, config: Path | None):
    """The form chosen by --config (a YAML file) or else --form."""
    if config is not None:
        from .spec import load_form

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
    """Fit a scaling law to a table of runs: parameters with Jacobian errors, statistics, plots, JSON."""
    from .fitting import fit as fit_runs
    from .plot import fit_figures
    from .report import render_fit

    check_outputs(plot_format, json_path, plot_dir=plot_dir)
    if ci not in ("jacobian", "profile"):
        raise typer.BadParameter(f"--ci must be jacobian or profile, not '{ci}'")
    table = TableOptions(format, tuple(column or ()), configs, on, exclude_top_loss, drop_missing)
    fixed, bounds = parameter_options(fix, bound)
    the_form, the_objective, runs = load_for(data, form, config, objective, delta, table)
    result = fit_runs(runs, the_form, the_objective, fixed=fixed, bounds=bounds)
    if ci == "profile":
        result = result.with_profile()
    console = console_for(json_path, quiet)
    if console is not None:
        render_fit(result, console)
    write_outputs(result, console, json_path, plot_dir, plot_format, fit_figures)
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
    json_path: JsonOpt = None,
    plot_dir: PlotDirOpt = None,
    plot_format: PlotFormatOpt = "png",
    quiet: QuietOpt = False,
) -> None:
    """Rank forms fitted to the same rows: AIC, BIC, Akaike weight, cross-validated and extrapolation
    error."""
    from .compare import compare_forms, load_compare_spec, render_compare
    from .errors import SpecError
    from .plot import compare_figures

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
                         pick("exclude_top_loss", exclude_top_loss), drop_missing)
    result = compare_forms(
        data, forms, objective=pick("objective", objective), delta=pick("delta", delta),
        folds=pick("folds", folds), holdout_top=pick("holdout_top", holdout_top), by=pick("by", by),
        seed=pick("seed", seed), rank_by=pick("rank_by", rank_by), load_options=vars(table))
    console = console_for(json_path, quiet)
    if console is not None:
        render_compare(result, console)
    write_outputs(result, console, json_path, plot_dir, plot_format, compare_figures)


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
    method: Annotated[str, typer.Option(
        "--method", help="case (rows), group (whole groups: --group or the group column) or residual "
                         "(residuals onto the fitted values).")] = "case",
    ci: Annotated[str, typer.Option("--ci", help="Interval: percentile, bca or basic.")] = "percentile",
    level: Annotated[float, typer.Option("--level", help="Confidence level of the intervals.")] = 0.95,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=0, help="Worker processes solving chunks of resamples (0: one per CPU).")] = 1,
    group: Annotated[str | None, typer.Option(
        "--group", help="Column whose rows are resampled together (default: the group column: group, "
                        "run, run_name or run_id).")] = None,
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
    table = TableOptions(format, tuple(column or ()), configs, on, exclude_top_loss, drop_missing)
    fixed, bounds = parameter_options(fix, bound)
    the_form, the_objective, runs = load_for(data, form, config, objective, delta, table)
    console = console_for(json_path, quiet)
    with progress_bar(console) as progress:
        result = run_bootstrap(runs, the_form, the_objective, n=n, seed=seed, method=method, ci=ci,
                               level=level, group=group, jobs=jobs, progress=progress, fixed=fixed,
                               bounds=bounds)
    if console is not None:
        render_bootstrap(result, console)
    if draws is not None:
        path = result.write_draws(draws)
        if console is not None:
            console.print(f"wrote {path}", style="dim", markup=False)
    write_outputs(result, console, json_path, plot_dir, plot_format, BootstrapResult.figures)


def main() -> None:
    app()
