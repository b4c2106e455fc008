"""The `scalefit` command end to end: malformed inputs, JSON output, help, version."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from conftest import ROOT

from scaling_cli import __version__

HEADER = ("d_model", "n_layers", "tokens", "loss")
N_ROWS = 30
DECOMPOSED_PARAMS = ["c_m", "alpha_m", "c_l", "alpha_l", "c_D", "alpha_D", "L0"]
TOP_KEYS = {"form", "objective", "n_points", "n_excluded", "params", "covariance", "stats", "converged",
            "convergence", "warnings", "versions", "input", "run", "groups", "columns", "design",
            "schema_version", "form_spec", "data", "details", "at_bound", "undetermined"}
STATS_KEYS = {"rss", "rmse_log", "mean_abs_rel_error", "r2", "aic", "bic", "dof"}


def table_rows(n: int = N_ROWS, seed: int = 0, depth: int | None = None) -> list[list[str]]:
    """Rows of a decomposed-law table (the paper's exponents, 0.5% noise) as CSV cells."""
    rng = np.random.default_rng(seed)
    width = rng.choice([256, 512, 1024, 2048, 4096], n)
    depths = rng.choice([4, 8, 16, 32, 64], n) if depth is None else np.full(n, depth)
    tokens = np.exp(rng.uniform(np.log(1e9), np.log(1e12), n))
    loss = 300 * width**-0.98 + 6 * depths**-1.2 + 500 * tokens**-0.3 + 1.75
    loss *= np.exp(rng.normal(0, 0.005, n))
    return [[str(w), str(d), f"{t:.6g}", f"{v:.6f}"] for w, d, t, v in zip(width, depths, tokens, loss,
                                                                         strict=True)]


def write_table(path: Path, rows=None, header=HEADER, sep: str = ",") -> Path:
    rows = table_rows() if rows is None else rows
    path.write_text("\n".join(sep.join(map(str, r)) for r in [list(header), *rows]) + "\n")
    return path


def edited(column: int, rows_to_change: tuple[int, ...], value: str, n: int = N_ROWS) -> list[list[str]]:
    """The good table with `value` written into `column` of the 1-based data rows given."""
    rows = table_rows(n)
    for row in rows_to_change:
        rows[row - 1][column] = value
    return rows


def assert_one_error_line(result, code: int, message: str | None = None, fragment: str | None = None,
                          internal: bool = False):
    """Exit code, exactly one `Error: ...` line on stderr, nothing on stdout, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("Error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert ("internal error" in err) == internal
    if message is not None:
        assert err == f"Error: {message}\n"
    if fragment is not None:
        assert fragment in err


# ---------------------------------------------------------------- malformed inputs
#
# Each case: a function that writes files into tmp_path and returns the arguments after `fit`,
# the exit code, and the whole expected message ({tmp} stands for tmp_path).

Case = tuple[str, Callable[[Path], list], int, str]


def _good(tmp: Path, *extra) -> list:
    return [write_table(tmp / "runs.csv"), *extra]


def _file(name: str, content: str | bytes) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        path = tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return [path]
    return make


def _rows(rows, name: str = "runs.csv", header=HEADER, *extra) -> Callable[[Path], list]:
    return lambda tmp: [write_table(tmp / name, rows, header), *extra]


def _directory(tmp: Path) -> list:
    (tmp / "runs.csv").mkdir()
    return [tmp / "runs.csv"]


def _join(left_header, left_rows, on: str | None) -> Callable[[Path], list]:
    def make(tmp: Path) -> list:
        runs = write_table(tmp / "runs.csv", left_rows, left_header)
        configs = write_table(tmp / "configs.csv", [["GPT-3 Small", 768, 12], ["GPT-3 XL", 2048, 24]],
                              ("model_name", "d_model", "n_layers"))
        return [runs, "--configs", configs] + (["--on", on] if on else [])
    return make


SAME_LOSS = [r[:3] + ["2.5"] for r in table_rows()]
CURVES = [["small", "1e9", "3.1"], ["xl", "2e9", "2.8"], ["smal", "3e9", "2.9"]]

MALFORMED: list[Case] = [
    ("missing-file", lambda tmp: [tmp / "missing.csv"], 2, "{tmp}/missing.csv: no such file"),
    ("missing-file-odd-extension", lambda tmp: [tmp / "missing.xlsx"], 2, "{tmp}/missing.xlsx: no such file"),
    ("directory", _directory, 2, "{tmp}/runs.csv: is a directory, not a table"),
    ("unknown-extension", lambda tmp: [write_table(tmp / "runs.xlsx")], 2,
     "{tmp}/runs.xlsx: cannot tell the format from the extension '.xlsx': pass --format (csv, tsv, jsonl, "
     "json, parquet)"),
    ("bad-format", lambda tmp: _good(tmp, "--format", "xls"), 2,
     "unknown format 'xls': use one of csv, tsv, jsonl, json, parquet"),
    ("binary-junk", _file("runs.csv", b"\x89PNG\r\n\x1a\n\xff\xfe\xfd\x00\x01"), 2,
     "{tmp}/runs.csv: not a text file (not UTF-8); is the format right? pass --format"),
    ("nul-bytes", _file("runs.csv", "d_model,n_layers\x00\n1,2\n"), 2,
     "{tmp}/runs.csv: not a text file (contains NUL bytes)"),
    ("empty-file", _file("runs.csv", ""), 2, "{tmp}/runs.csv: the table is empty"),
    ("blank-lines-only", _file("runs.csv", "\n \n\n"), 2, "{tmp}/runs.csv: the table is empty"),
    ("header-only", _file("runs.csv", "d_model,n_layers,tokens,loss\n"), 2,
     "{tmp}/runs.csv: the table is empty (a header but no rows)"),
    ("duplicate-columns", _rows([r + ["1"] for r in table_rows()], "runs.csv", (*HEADER, "loss")), 2,
     "{tmp}/runs.csv: duplicate column names: 'loss'"),
    ("empty-column-name", _rows(table_rows(), "runs.csv", ("d_model", "", "tokens", "loss")), 2,
     "{tmp}/runs.csv: the header has an empty column name (column 2)"),
    ("ragged-row", _rows([r if i != 2 else r[:3] for i, r in enumerate(table_rows())]), 2,
     "{tmp}/runs.csv: line 4 has 3 fields, the header has 4"),
    ("malformed-json-line", _file("runs.jsonl", '{"d_model": 1, "n_layers": 2, "tokens": 3, "loss": 4}\n'
                                                '{"d_model": 1,\n'), 2,
     "{tmp}/runs.jsonl: line 2 is not valid JSON (Expecting property name enclosed in double quotes)"),
    ("json-line-not-an-object", _file("runs.jsonl", '{"d_model": 1}\n[1, 2]\n'), 2,
     "{tmp}/runs.jsonl: line 2 is not a JSON object"),
    ("json-not-records", _file("runs.json", "[1, 2, 3]"), 2,
     "{tmp}/runs.json: JSON must be a list of records (objects) or an object of columns"),
    ("json-scalar", _file("runs.json", '"runs"'), 2,
     "{tmp}/runs.json: JSON must be a list of records (objects) or an object of columns"),
    ("json-invalid", _file("runs.json", "{'d_model': [1]}"), 2,
     "{tmp}/runs.json: not valid JSON (line 1: Expecting property name enclosed in double quotes)"),
    ("json-ragged-columns", _file("runs.json", '{"d_model": [1, 2], "loss": [3]}'), 2,
     "{tmp}/runs.json: JSON columns have different lengths [1, 2]"),
    ("non-numeric", _rows(edited(0, (4, 9, 17), "1.3x")), 2,
     "{tmp}/runs.csv: column 'd_model' has 3 non-numeric values (rows 4, 9, 17): '1.3x', '1.3x', '1.3x'"),
    ("nan", _rows(edited(3, (5,), "nan")), 2, "{tmp}/runs.csv: column 'loss' has NaN in row 5"),
    ("inf", _rows(edited(2, (2, 3), "inf")), 2,
     "{tmp}/runs.csv: column 'tokens' has infinite values in rows 2, 3"),
    ("zero", _rows(edited(1, (7,), "0")), 2,
     "{tmp}/runs.csv: column 'n_layers' must be positive (powers and logs of it are taken) but row 7 "
     "holds 0"),
    ("negative", _rows(edited(3, (7, 8), "-1.5")), 2,
     "{tmp}/runs.csv: column 'loss' must be positive (powers and logs of it are taken) but rows 7, 8 hold "
     "-1.5, -1.5"),
    ("empty-cells", _rows(edited(3, (7, 8), "")), 2,
     "{tmp}/runs.csv: column 'loss' has 2 empty cells (rows 7, 8); fill them or pass --drop-missing"),
    ("missing-loss-column", _rows([r[:3] for r in table_rows()], "runs.csv", HEADER[:3]), 2,
     "{tmp}/runs.csv: no column for loss; looked for loss, final_loss, val_loss, eval_loss; the table has "
     "'d_model', 'n_layers', 'tokens'; name one with --column loss=NAME"),
    ("missing-tokens-and-flops", _rows([r[:2] + r[3:] for r in table_rows()], "runs.csv",
                                       ("d_model", "n_layers", "loss")), 2,
     "{tmp}/runs.csv: no column for tokens (or both flops and params, to compute tokens = flops / (6 * "
     "params)); looked for tokens, num_tokens, training_tokens, n_tokens, D; the table has 'd_model', "
     "'n_layers', 'loss'; name one with --column tokens=NAME"),
    ("missing-params-for-chinchilla", lambda tmp: _good(tmp, "--form", "chinchilla"), 2,
     "{tmp}/runs.csv: no column for params; looked for params, n_params, num_params, model_size, Model Size, "
     "N, params_active_precise; the table has 'd_model', 'n_layers', 'tokens', 'loss'; name one with "
     "--column params=NAME"),
    ("ambiguous-columns", _rows([r + [r[0]] for r in table_rows()], "runs.csv", (*HEADER, "Hidden Size")), 2,
     "{tmp}/runs.csv: two columns could be the width: 'd_model', 'Hidden Size'; choose one with "
     "--column width=NAME"),
    ("column-without-equals", lambda tmp: _good(tmp, "--column", "width"), 2,
     "--column 'width': expected ROLE=NAME, e.g. --column width=d_model"),
    ("column-unknown-role", lambda tmp: _good(tmp, "--column", "size=d_model"), 2,
     "--column 'size=d_model': unknown role 'size'; roles are width, depth, tokens, loss, params, flops, "
     "group"),
    ("column-empty-name", lambda tmp: _good(tmp, "--column", "width="), 2,
     "--column 'width=': the column name is empty"),
    ("column-not-in-table", lambda tmp: _good(tmp, "--column", "width=d_modle"), 2,
     "{tmp}/runs.csv: --column width=d_modle: no such column (closest: 'd_model')"),
    ("exclude-more-than-rows", lambda tmp: _good(tmp, "--exclude-top-loss", "31"), 2,
     "{tmp}/runs.csv: --exclude-top-loss 31 is more than the 30 rows"),
    ("exclude-every-row", lambda tmp: _good(tmp, "--exclude-top-loss", "30"), 2,
     "{tmp}/runs.csv: no rows left after --exclude-top-loss 30"),
    ("exclude-ties-empty-the-table", _rows(SAME_LOSS, "runs.csv", HEADER, "--exclude-top-loss", "1"), 2,
     "{tmp}/runs.csv: no rows left after --exclude-top-loss 1"),
    ("exclude-negative", lambda tmp: _good(tmp, "--exclude-top-loss", "-1"), 2,
     "Invalid value for '--exclude-top-loss': -1 is not in the range x>=0."),
    ("on-without-configs", lambda tmp: _good(tmp, "--on", "model"), 2,
     "--on is only used with --join FILE"),
    ("configs-without-on", _join(("model", "tokens", "loss"), CURVES[:2], None), 2,
     "--join needs --on KEY or --on LEFT=RIGHT (the column that names the model in each table)"),
    ("configs-file-missing", lambda tmp: _good(tmp, "--configs", tmp / "configs.csv", "--on", "model"), 2,
     "{tmp}/configs.csv: no such file"),
    ("join-key-missing-left", _join(("model_id", "tokens", "loss"), CURVES[:2], "model=model_name"), 2,
     "{tmp}/runs.csv: --on: no column 'model' (closest: 'model_id')"),
    ("join-key-missing-right", _join(("model", "tokens", "loss"), CURVES[:2], "model=name"), 2,
     "{tmp}/configs.csv: --on: no column 'name' (closest: 'model_name', 'n_layers', 'd_model')"),
    ("join-unmatched-keys", _join(("model", "tokens", "loss"), CURVES, "model=model_name"), 2,
     "{tmp}/runs.csv: 1 value of 'model' has no row in {tmp}/configs.csv ('model_name'): 'smal' "
     "(closest: 'GPT-3 Small')"),
    ("unknown-objective", lambda tmp: _good(tmp, "--objective", "l1"), 2,
     "unknown objective 'l1': use one of log-ls, ls, huber"),
    ("huber-delta-zero", lambda tmp: _good(tmp, "--objective", "huber", "--delta", "0"), 2,
     "--delta must be a positive number, not 0.0"),
    ("huber-delta-negative", lambda tmp: _good(tmp, "--objective", "huber", "--delta", "-1e-3"), 2,
     "--delta must be a positive number, not -0.001"),
    ("delta-not-a-number", lambda tmp: _good(tmp, "--objective", "huber", "--delta", "small"), 2,
     "Invalid value for '--delta': 'small' is not a valid float."),
    ("unknown-form", lambda tmp: _good(tmp, "--form", "kaplan"), 2,
     "unknown form 'kaplan': built-in forms are decomposed, chinchilla; 'kaplan' is a shipped YAML form: "
     "pass --config kaplan"),
    ("unknown-form-anywhere", lambda tmp: _good(tmp, "--form", "kapla"), 2,
     "unknown form 'kapla': built-in forms are decomposed, chinchilla; or pass --config FORM.yaml (`scalefit "
     "forms` lists the shipped ones)"),
    ("yaml-given-to-join", lambda tmp: _good(tmp, "--join", tmp / "law.yaml", "--on", "m"), 2,
     "{tmp}/law.yaml looks like a form (YAML), but --join takes a table of architectures to join onto DATA; "
     "for a form use --config {tmp}/law.yaml"),
    ("table-given-to-config", lambda tmp: _good(tmp, "--config", tmp / "arch.csv"), 2,
     "{tmp}/arch.csv looks like a table, but --config takes a form written in YAML; to join an architecture "
     "table onto DATA use --join {tmp}/arch.csv --on KEY"),
    ("bad-plot-format", lambda tmp: _good(tmp, "--plot-format", "gif"), 2,
     "Invalid value: --plot-format must be one of png, pdf, svg, not 'gif'"),
    ("too-few-rows", _rows(table_rows()[:7]), 1,
     "7 rows are not enough to fit 7 free parameters of form 'decomposed'"),
    ("too-few-rows-after-exclusion",
     _rows(table_rows()[:10], "runs.csv", HEADER, "--exclude-top-loss", "4"), 1,
     "6 rows are not enough to fit 7 free parameters of form 'decomposed'"),
    ("no-data-argument", lambda tmp: [], 2, "Missing argument 'data'."),
    ("unknown-option", lambda tmp: _good(tmp, "--bogus"), 2, "No such option: --bogus"),
]


@pytest.mark.parametrize(("make", "code", "message"), [c[1:] for c in MALFORMED],
                         ids=[c[0] for c in MALFORMED])
def test_malformed_input_is_one_error_line(make, code, message, cli, tmp_path):
    args = make(tmp_path)
    result = cli("fit", *args)
    expected = message.format(tmp=tmp_path)
    if expected.startswith("No such option"):  # click may add "(Possible options: ...)"
        assert_one_error_line(result, code, fragment=expected)
    else:
        assert_one_error_line(result, code, expected)


def test_there_are_at_least_twenty_malformed_cases():
    assert len(MALFORMED) >= 20
    assert len({name for name, *_ in MALFORMED}) == len(MALFORMED)


def test_the_styleguide_example_message(cli, tmp_path):
    path = write_table(tmp_path / "runs.csv", edited(0, (4, 9, 17), "1.3x"))
    result = cli("fit", path)
    assert_one_error_line(result, 2, fragment="column 'd_model' has 3 non-numeric values (rows 4, 9, 17)")


@pytest.mark.parametrize("command", [("fit",), ("bootstrap", "--n", "20"), ("compare", "decomposed")])
@pytest.mark.parametrize("json_name", ["missing/dir/fit.json", "missing/fit.json"])
def test_json_into_a_missing_directory(json_name, command, cli, tmp_path):
    """Every command refuses an unwritable output before doing its work (no report, no files)."""
    table = write_table(tmp_path / "runs.csv")
    before = set(tmp_path.rglob("*"))
    target = tmp_path / json_name
    name, *rest = command
    result = cli(name, table, *rest, "--json", target)
    assert_one_error_line(result, 2, f"cannot write {target}: directory {target.parent} does not exist")
    assert set(tmp_path.rglob("*")) == before


def test_json_onto_a_directory_leaves_no_partial_file(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    target = tmp_path / "out"
    target.mkdir()
    result = cli("fit", table, "--json", target, "-q")
    assert result.exit_code == 2
    assert result.stderr == f"Error: cannot write {target}: it is a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "runs.csv"]
    assert list(target.iterdir()) == []


def test_a_bug_is_one_line_too(cli, tmp_path, monkeypatch):
    import scaling_cli.fitting

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(scaling_cli.fitting, "fit", broken)
    monkeypatch.delenv("SCALEFIT_DEBUG", raising=False)
    result = cli("fit", write_table(tmp_path / "runs.csv"))
    assert_one_error_line(result, 1, fragment="internal error (ZeroDivisionError: boom); this is a bug",
                          internal=True)


def test_the_real_process_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "scaling_cli", "fit", str(tmp_path / "missing.csv")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"Error: {tmp_path / 'missing.csv'}: no such file\n"


# ---------------------------------------------------------------- gpt3: a table that needs --drop-missing


def test_gpt3_curves_say_to_pass_drop_missing(cli):
    from conftest import shared_file

    curves = shared_file("data", "gpt3_curves.csv")
    configs = shared_file("data", "gpt3_configs.csv")
    result = cli("fit", curves, "--configs", configs, "--on", "model=model_name", "--column", "tokens=step")
    assert_one_error_line(result, 2, fragment=f"{curves}: column 'val_loss' has ")
    assert result.stderr.rstrip().endswith("fill them or pass --drop-missing")
    # and with the training curves instead, the other half of the rows are the empty ones
    result = cli("fit", curves, "--configs", configs, "--on", "model=model_name", "--column", "tokens=step",
                 "--column", "loss=train_loss")
    assert_one_error_line(result, 2, fragment=f"{curves}: column 'train_loss' has ")


def test_format_overrides_the_extension(cli, tmp_path):
    table = write_table(tmp_path / "runs.txt", sep="\t")
    result = cli("fit", table, "--format", "tsv", "--json", "-", "-q")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["n_points"] == N_ROWS


def test_drop_missing_fits_what_is_left(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv", edited(3, (7, 8), ""))
    result = cli("fit", table, "--drop-missing", "--json", "-", "-q")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["n_points"] == N_ROWS - 2
    assert doc["n_excluded"] == 2


# ---------------------------------------------------------------- --json


def _strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _walk(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def check_fit_document(doc: dict, table: Path, n_points: int, n_excluded: int = 0) -> None:
    """Exactly the documented keys, with the documented types."""
    assert set(doc) == TOP_KEYS
    assert doc["form"] == "decomposed"
    assert re.fullmatch(r"[0-9a-f]{32}", doc["run"]["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", doc["run"]["time"])
    assert set(doc["objective"]) == {"name", "delta", "value"}
    assert doc["objective"]["name"] == "log-ls"
    assert doc["objective"]["delta"] is None
    assert isinstance(doc["objective"]["value"], float) and doc["objective"]["value"] > 0
    assert doc["n_points"] == n_points
    assert doc["n_excluded"] == n_excluded
    assert list(doc["params"]) == DECOMPOSED_PARAMS
    for entry in doc["params"].values():
        assert set(entry) == {"value", "stderr", "stderr_iid", "ci95"}
        assert entry["stderr"] == entry["stderr_iid"]  # no group column: the iid errors are reported
        assert isinstance(entry["value"], float)
        assert entry["stderr"] is None or isinstance(entry["stderr"], float)
        assert len(entry["ci95"]) == 2
    assert set(doc["covariance"]) == {"type", "ci_dof", "names", "matrix"}
    assert doc["covariance"]["type"] == "iid" and doc["covariance"]["ci_dof"] == n_points - 7
    assert doc["groups"] is None
    assert set(doc["design"]["variables"]) == {"m", "l", "D"}
    assert doc["covariance"]["names"] == DECOMPOSED_PARAMS
    assert len(doc["covariance"]["matrix"]) == 7 and all(len(row) == 7 for row in doc["covariance"]["matrix"])
    assert set(doc["stats"]) == STATS_KEYS
    assert doc["stats"]["dof"] == n_points - 7 and isinstance(doc["stats"]["dof"], int)
    assert isinstance(doc["converged"], bool)
    assert isinstance(doc["warnings"], list) and all(isinstance(w, str) for w in doc["warnings"])
    for key in ("at_bound", "undetermined"):
        assert isinstance(doc[key], list) and set(doc[key]) <= set(DECOMPOSED_PARAMS)
    assert doc["versions"]["scalefit"] == __version__
    assert all(isinstance(v, str) for v in doc["versions"].values())
    assert set(doc["input"]) == {"path", "sha256"}
    assert doc["input"]["path"] == str(table)
    assert doc["input"]["sha256"] == hashlib.sha256(table.read_bytes()).hexdigest()
    for leaf in _walk(doc):
        assert leaf is None or isinstance(leaf, (str, int, float, bool))
        if isinstance(leaf, float):
            assert np.isfinite(leaf)


def test_json_to_stdout_is_only_json_with_the_documented_keys(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table, "--json", "-")
    assert result.exit_code == 0, result.stderr
    doc = _strict_json(result.stdout)
    check_fit_document(doc, table, N_ROWS)
    assert doc["converged"] is True
    assert doc["warnings"] == []
    for name, entry in doc["params"].items():
        assert entry["stderr"] > 0, name
        lo, hi = entry["ci95"]
        assert lo < entry["value"] < hi
    # the human report went to stderr instead
    assert "alpha_l" in result.stderr
    assert "rows used / dropped" in result.stderr


def test_json_to_stdout_quiet_prints_nothing_else(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table, "--json", "-", "-q", "--exclude-top-loss", "3")
    assert result.exit_code == 0
    assert result.stderr == ""
    doc = _strict_json(result.stdout)
    check_fit_document(doc, table, N_ROWS - 3, n_excluded=3)


def test_all_runs_one_depth_cannot_determine_the_depth_term(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv", table_rows(depth=16))
    target = tmp_path / "fit.json"
    result = cli("fit", table, "--json", target)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    doc = _strict_json(target.read_text())
    check_fit_document(doc, table, N_ROWS)
    # lists for scripts, not only warning strings (in the flat valley alpha_l may end on its bound)
    assert {"c_l", "alpha_l"} <= set(doc["undetermined"]) | set(doc["at_bound"])
    assert "c_l" in doc["undetermined"]
    for name in ("alpha_l", "c_l"):
        assert doc["params"][name]["stderr"] is None, name
        assert doc["params"][name]["ci95"] == [None, None]
        i = DECOMPOSED_PARAMS.index(name)
        assert all(v is None for v in doc["covariance"]["matrix"][i])
    for name in ("alpha_m", "alpha_D"):
        assert doc["params"][name]["stderr"] > 0
    undetermined = [w for w in doc["warnings"] if "cannot determine" in w]
    assert len(undetermined) == 1
    # in the flat valley alpha_l may stop anywhere, its upper bound included: either way it is named
    at_bound = any(w.startswith("alpha_l = ") and "at its bound" in w for w in doc["warnings"])
    assert "c_l" in undetermined[0] and ("alpha_l" in undetermined[0] or at_bound)
    # the table says n/a for them and the warning is printed
    lines = result.stdout.splitlines()
    for name in ("alpha_l", "c_l"):
        row = next(line for line in lines if re.search(rf"\b{name}\b", line) and "±" in line)
        assert "± n/a" in row and ("cannot be determined" in row or "bound" in row)
    assert any(line.startswith("warning: cannot determine") for line in lines)
    assert "cannot place depth scaling in a regime" in result.stdout


def test_the_report_says_tokens_came_from_flops(cli, tmp_path):
    rng = np.random.default_rng(3)
    params = np.exp(rng.uniform(np.log(1e7), np.log(1e10), 25))
    tokens = np.exp(rng.uniform(np.log(1e9), np.log(1e11), 25))
    loss = (1.8 + 480 * params**-0.35 + 2000 * tokens**-0.37) * np.exp(rng.normal(0, 0.003, 25))
    rows = [[f"{n:.6g}", f"{6 * n * d:.6g}", f"{v:.6f}"]
            for n, d, v in zip(params, tokens, loss, strict=True)]
    table = write_table(tmp_path / "runs.csv", rows, ("Model Size", "Training FLOP", "loss"))
    result = cli("fit", table, "--form", "chinchilla")
    assert result.exit_code == 0, result.stderr
    assert "note: tokens were not in the table: computed as flops / (6 * params)" in result.stdout


# ---------------------------------------------------------------- help, README, version


def _commands() -> list[str]:
    import typer

    from scaling_cli.cli import app

    return sorted(typer.main.get_command(app).commands)


def test_there_is_a_fit_command():
    assert "fit" in _commands()


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(command, cli):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert f"scalefit {command}" in result.stdout
    assert "Usage" in result.stdout


@pytest.mark.parametrize("command", _commands())
def test_every_option_has_help_text(command):
    import typer

    from scaling_cli.cli import app

    click_command = typer.main.get_command(app).commands[command]
    assert click_command.help
    for param in click_command.params:
        if param.param_type_name == "option":
            assert param.help, f"{command} {param.opts} has no help text"


def test_top_level_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in _commands():
        assert command in result.stdout


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_readme(command):
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md is missing"
    assert f"scalefit {command}" in readme.read_text(encoding="utf-8")


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout == f"scalefit {__version__}\n"


# ---------------------------------------------------------------- issue 11: names people get wrong


def test_join_replaces_configs_which_still_works_unlisted(cli, tmp_path):
    runs = write_table(tmp_path / "runs.csv", [["GPT-3 Small", 2e9, 3.1]], header=("model", "tokens", "loss"))
    arch = write_table(tmp_path / "arch.csv", [["GPT-3 Small", 768, 12]],
                       header=("model", "d_model", "n_layers"))
    for flag in ("--join", "--configs", "--configs="):
        args = [f"{flag}{arch}"] if flag.endswith("=") else [flag, arch]
        result = cli("fit", runs, *args, "--on", "model")
        # one row is too few to fit, but the join itself worked: the error is about fitting
        assert "7 free parameters" in result.stderr, (flag, result.stderr)
    help_text = cli("fit", "--help").stdout
    assert re.search(r"│ --join ", help_text) and not re.search(r"│ --configs", help_text)  # not listed


def test_plot_format_in_any_case(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    result = cli("fit", table, "--plot-dir", tmp_path / "figs", "--plot-format", "PDF", "-q")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.suffix for p in (tmp_path / "figs").iterdir()) == [".pdf"] * 3


def test_forms_lists_builtin_and_shipped_forms_with_references(cli):
    from scaling_cli.forms import BUILTIN_FORMS, shipped_forms

    result = cli("forms")
    assert result.exit_code == 0, result.stderr
    for name in BUILTIN_FORMS:
        assert f"--form {name}" in result.stdout
    for name in shipped_forms():
        assert f"--config {name}" in result.stdout
    assert "Kaplan et al. (2020), arXiv:2001.08361" in " ".join(result.stdout.split())


def test_config_finds_a_shipped_form_by_name(cli, tmp_path):
    table = write_table(tmp_path / "runs.csv")
    by_name = cli("fit", table, "--config", "width_free", "--json", "-", "-q")
    by_path = cli("fit", table, "--config", ROOT / "scaling_cli" / "forms_yaml" / "width_free.yaml",
                  "--json", "-", "-q")
    assert by_name.exit_code == 0, by_name.stderr
    assert json.loads(by_name.stdout)["params"] == json.loads(by_path.stdout)["params"]


IMPORTS_OF_A_FIT = """
import runpy, sys
sys.argv = ["scalefit", "fit", sys.argv[1], "--quiet"]
try:
    runpy.run_module("scaling_cli", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print(" ".join(sorted(sys.modules)))
"""


def test_a_plain_fit_imports_no_heavy_library():
    # scipy, pandas, matplotlib, lmfit and sympy cost 0.1-0.5 s each to import; a fit of a built-in
    # form without --plot-dir needs none of them (nor the plot module)
    example = Path(__file__).resolve().parents[1] / "data" / "example_runs.csv"
    proc = subprocess.run([sys.executable, "-c", IMPORTS_OF_A_FIT, str(example)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    modules = set(proc.stdout.split())
    packages = {m.split(".")[0] for m in modules}
    assert {"scaling_cli.fitting", "numpy"} <= modules
    assert not packages & {"scipy", "pandas", "matplotlib", "lmfit", "sympy"}
    assert "scaling_cli.plot" not in modules
