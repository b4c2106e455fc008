"""Loading runs: formats, column roles, number parsing, exclusion, joins (scaling_cli.io)."""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file

from scaling_cli.errors import DataError
from scaling_cli.io import (
    ROLE_ALIASES,
    TOKENS_FROM_FLOPS_NOTE,
    load_runs,
    normalize_name,
    parse_number,
    read_table,
)

COLUMNS = ("d_model", "n_layers", "tokens", "loss")
ROWS = [
    (256, 4, 1e9, 3.91),
    (512, 8, 2.5e9, 3.42),
    (1024, 16, 1e10, 2.98),
    (2048, 32, 4e10, 2.61),
    (4096, 64, 1.6e11, 2.33),
]
DECOMPOSED = ("width", "depth", "tokens", "loss")

GPT3_ARCHITECTURE = {  # model -> (d_model, n_layers), GPT-3 Table 2.1
    "small": (768, 12), "medium": (1024, 24), "large": (1536, 24), "xl": (2048, 24),
    "2.7b": (2560, 32), "6.7b": (4096, 32), "13b": (5140, 40), "175b": (12288, 96),
}


def write_csv(path: Path, header, rows, delimiter: str = ",") -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def records(header=COLUMNS, rows=ROWS) -> list[dict]:
    return [dict(zip(header, row, strict=True)) for row in rows]


# ---------------------------------------------------------------- formats


def _write_format(kind: str, tmp_path: Path) -> tuple[Path, str | None]:
    """The canonical table written as `kind`; the --format to pass (None: from the extension)."""
    if kind == "csv":
        return write_csv(tmp_path / "runs.csv", COLUMNS, ROWS), None
    if kind == "tsv":
        return write_csv(tmp_path / "runs.tsv", COLUMNS, ROWS, delimiter="\t"), None
    if kind == "jsonl":
        path = tmp_path / "runs.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records()))
        return path, None
    if kind == "json-records":
        path = tmp_path / "runs.json"
        path.write_text(json.dumps(records(), indent=1))
        return path, None
    if kind == "json-wrapped-records":
        path = tmp_path / "runs.json"
        path.write_text(json.dumps({"runs": records()}))
        return path, None
    if kind == "json-columns":
        path = tmp_path / "runs.json"
        path.write_text(json.dumps({name: [row[i] for row in ROWS] for i, name in enumerate(COLUMNS)}))
        return path, None
    if kind == "parquet":
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        path = tmp_path / "runs.parquet"
        pq.write_table(pa.Table.from_pylist(records()), path)
        return path, None
    if kind == "csv-gz":
        path = tmp_path / "runs.csv.gz"
        plain = write_csv(tmp_path / "plain.csv", COLUMNS, ROWS)
        path.write_bytes(gzip.compress(plain.read_bytes()))
        return path, None
    if kind == "override-csv-in-txt":
        return write_csv(tmp_path / "runs.txt", COLUMNS, ROWS), "csv"
    if kind == "override-jsonl-in-json":
        path = tmp_path / "runs.json"
        path.write_text("".join(json.dumps(r) + "\n" for r in records()))
        return path, "jsonl"
    if kind == "override-tsv-in-csv":
        return write_csv(tmp_path / "runs.csv", COLUMNS, ROWS, delimiter="\t"), "TSV"
    raise AssertionError(kind)


FORMAT_KINDS = ["csv", "tsv", "jsonl", "json-records", "json-wrapped-records", "json-columns", "parquet",
                "csv-gz", "override-csv-in-txt", "override-jsonl-in-json", "override-tsv-in-csv"]


@pytest.mark.parametrize("kind", FORMAT_KINDS)
def test_every_format_gives_the_same_runs(kind, tmp_path):
    path, fmt = _write_format(kind, tmp_path)
    runs = load_runs(path, format=fmt)
    assert dict(runs.roles) == {"width": "d_model", "depth": "n_layers", "tokens": "tokens", "loss": "loss"}
    assert len(runs) == len(ROWS)
    assert runs.n_total == len(ROWS)
    assert runs.n_excluded == 0
    for i, name in enumerate(COLUMNS):
        assert runs.column(name).dtype == float
        np.testing.assert_array_equal(runs.column(name), [row[i] for row in ROWS])
    assert runs.path == str(path)
    assert re.fullmatch(r"[0-9a-f]{64}", runs.sha256)


def test_sha256_is_of_the_file_bytes(tmp_path):
    import hashlib

    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    assert load_runs(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_format_comes_from_the_extension_case_insensitively(tmp_path):
    path = write_csv(tmp_path / "RUNS.CSV", COLUMNS, ROWS)
    assert len(load_runs(path)) == len(ROWS)


def test_a_wrong_format_override_is_a_data_error(tmp_path):
    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    with pytest.raises(DataError, match="not valid JSON"):
        load_runs(path, format="json")


def test_blank_lines_and_padded_header_cells_are_tolerated(tmp_path):
    path = tmp_path / "runs.csv"
    text = " d_model , n_layers,tokens ,loss\n\n" + "\n\n".join(",".join(map(str, r)) for r in ROWS) + "\n\n"
    path.write_text(text)
    runs = load_runs(path)
    assert runs.roles["width"] == "d_model"
    np.testing.assert_array_equal(runs.column("loss"), [r[3] for r in ROWS])


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_bytes("\ufeff".encode() + write_csv(tmp_path / "x.csv", COLUMNS, ROWS).read_bytes())
    assert load_runs(path).roles["width"] == "d_model"


def test_jsonl_records_with_different_keys_fill_missing_cells(tmp_path):
    path = tmp_path / "runs.jsonl"
    lines = [json.dumps(r) for r in records()]
    lines[2] = json.dumps({k: v for k, v in records()[2].items() if k != "loss"})
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"column 'loss' has 1 empty cell \(row 3\)"):
        load_runs(path)
    runs = load_runs(path, drop_missing=True)
    assert len(runs) == len(ROWS) - 1
    assert runs.n_excluded == 1


def test_unused_columns_ride_along_numeric_or_text(tmp_path):
    header = (*COLUMNS, "lr", "run_name")
    rows = [(*r, 1e-3 * (i + 1), f"run-{i}") for i, r in enumerate(ROWS)]
    runs = load_runs(write_csv(tmp_path / "runs.csv", header, rows))
    np.testing.assert_allclose(runs.column("lr"), [1e-3 * (i + 1) for i in range(len(ROWS))])
    assert runs.roles["group"] == "run_name"
    assert list(runs.column("group")) == [f"run-{i}" for i in range(len(ROWS))]
    frame = runs.to_frame()
    assert list(frame.columns)[:4] == list(COLUMNS)
    assert len(frame) == len(ROWS)


# ---------------------------------------------------------------- roles from names


def _variants(alias: str) -> list[str]:
    """The alias as written, upper-cased, and with other separators and capitals."""
    shouted = alias.upper()
    spaced = alias.replace("_", " ").title()
    dashed = alias.replace("_", "-").replace(" ", ".").lower()
    return list(dict.fromkeys([alias, shouted, spaced, dashed]))


ALIAS_CASES = [(role, alias, variant)
               for role, aliases in ROLE_ALIASES.items() if role != "group"
               for alias in aliases for variant in _variants(alias)]
REQUIRED_ALIASES = {
    "width": ("d_model", "hidden_size", "n_embd", "width", "dim"),
    "depth": ("n_layers", "num_layers", "n_layer", "layers", "depth"),
    "tokens": ("tokens", "num_tokens", "training_tokens", "n_tokens", "D"),
    "loss": ("loss", "final_loss", "val_loss", "eval_loss"),
    "params": ("params", "n_params", "num_params", "model_size", "Model Size", "N", "params_active_precise"),
    "flops": ("flops", "FLOP", "Training FLOP", "compute", "C"),
}


@pytest.mark.parametrize("role", sorted(REQUIRED_ALIASES))
def test_every_name_the_issue_lists_is_an_alias(role):
    wanted = {normalize_name(a) for a in REQUIRED_ALIASES[role]}
    assert wanted <= {normalize_name(a) for a in ROLE_ALIASES[role]}


@pytest.mark.parametrize(("role", "alias", "header"), ALIAS_CASES,
                         ids=[f"{r}<-{h}" for r, _, h in ALIAS_CASES])
def test_roles_are_found_ignoring_case_spaces_and_punctuation(role, alias, header, tmp_path):
    other = "objective" if role == "loss" else "loss"
    names = [header, other]
    rows = [(7.5, 3.0), (8.5, 2.5)]
    path = write_csv(tmp_path / "runs.csv", names, rows)
    response = other if role == "loss" else "loss"
    runs = load_runs(path, require=(role,), response=response)
    assert runs.roles[role] == header
    np.testing.assert_array_equal(runs.column(role), [7.5, 8.5])


def test_normalize_name_drops_case_spaces_and_punctuation():
    assert normalize_name("Model Size") == normalize_name("model_size") == normalize_name("MODEL-SIZE")
    assert normalize_name(" Training FLOP ") == "trainingflop"
    assert normalize_name("d_model") == "dmodel"


def test_the_real_chinchilla_and_epoch_headers(chinchilla_wd, epoch_csv):
    wd = load_runs(chinchilla_wd, require=DECOMPOSED + ("params", "flops"))
    assert dict(wd.roles) == {"width": "d_model", "depth": "n_layers", "tokens": "num_tokens",
                              "loss": "loss", "params": "model_size", "flops": "FLOP"}
    epoch = load_runs(epoch_csv, require=("params", "tokens", "loss"))
    assert epoch.roles["params"] == "Model Size"
    assert epoch.roles["flops"] == "Training FLOP"


def test_gemstones_jsonl_headers():
    folder = shared_file("data", "gemstones")
    path = sorted(folder.glob("*.jsonl"))[0]
    runs = load_runs(path, require=DECOMPOSED + ("params",))
    assert dict(runs.roles) == {"width": "width", "depth": "depth", "tokens": "tokens", "loss": "final_loss",
                                "params": "params_active_precise", "group": "run_name"}
    assert len(runs) > 100


def test_column_override_names_columns_nobody_would_guess(tmp_path):
    header = ("emb", "blocks", "seen", "xent")
    path = write_csv(tmp_path / "runs.csv", header, ROWS)
    runs = load_runs(path, columns=["width=emb", "depth=blocks", "tokens=seen", "loss=xent"])
    assert dict(runs.roles) == dict(zip(DECOMPOSED, header, strict=True))
    np.testing.assert_array_equal(runs.column("depth"), [r[1] for r in ROWS])


def test_column_override_as_a_mapping_and_loosely_spelled(tmp_path):
    header = ("Embedding Dim", "blocks", "tokens", "loss")
    path = write_csv(tmp_path / "runs.csv", header, ROWS)
    runs = load_runs(path, columns={"width": "embedding_dim", "depth": "BLOCKS"})
    assert runs.roles["width"] == "Embedding Dim"
    assert runs.roles["depth"] == "blocks"


def test_column_override_resolves_two_candidates(tmp_path):
    header = ("d_model", "hidden_size", "n_layers", "tokens", "loss")
    rows = [(r[0], 2 * r[0], *r[1:]) for r in ROWS]
    path = write_csv(tmp_path / "runs.csv", header, rows)
    runs = load_runs(path, columns=["width=hidden_size"])
    assert runs.roles["width"] == "hidden_size"
    np.testing.assert_array_equal(runs.column("width"), [2 * r[0] for r in ROWS])


def test_two_candidates_for_one_role_is_an_error_naming_both(tmp_path):
    header = ("d_model", "n_layers", "tokens", "loss", "val_loss")
    rows = [(*r, r[3] + 0.1) for r in ROWS]
    path = write_csv(tmp_path / "runs.csv", header, rows)
    with pytest.raises(DataError) as info:
        load_runs(path)
    assert str(info.value) == (f"{path}: two columns could be the loss: 'loss', 'val_loss'; choose one "
                               "with columns={'loss': NAME}")
    assert len(load_runs(path, columns=["loss=val_loss"])) == len(ROWS)


def test_two_candidates_for_a_role_nobody_needs_do_not_matter(tmp_path):
    header = ("d_model", "width", "params", "tokens", "loss")
    rows = [(r[0], r[0], 1e6 * r[0], r[2], r[3]) for r in ROWS]
    path = write_csv(tmp_path / "runs.csv", header, rows)
    runs = load_runs(path, require=("params", "tokens", "loss"))
    assert "width" not in runs.roles


def test_a_column_named_by_an_override_is_not_also_taken_by_another_role(tmp_path):
    # `dim` is a width alias; once it is the depth nobody may read it as the width too
    header = ("d_model", "dim", "tokens", "loss")
    path = write_csv(tmp_path / "runs.csv", header, ROWS)
    runs = load_runs(path, columns=["depth=dim"])
    assert runs.roles["width"] == "d_model"
    assert runs.roles["depth"] == "dim"


def test_a_missing_role_lists_the_names_looked_for(tmp_path):
    path = write_csv(tmp_path / "runs.csv", ("d_model", "tokens", "loss"), [(r[0], r[2], r[3]) for r in ROWS])
    with pytest.raises(DataError) as info:
        load_runs(path)
    assert str(info.value) == (
        f"{path}: no column for depth; looked for n_layers, num_layers, n_layer, layers, depth; the table "
        f"has 'd_model', 'tokens', 'loss'; name one with columns={{'depth': NAME}}; or pass form=... (e.g. "
        f"form='chinchilla') to need only that law's columns")


def test_a_required_plain_column_that_is_missing_suggests_the_closest(tmp_path):
    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    with pytest.raises(DataError, match=r"no column 'n_layer_count' \(closest: 'n_layers'\)"):
        load_runs(path, require=("width", "n_layer_count", "loss"))


# ---------------------------------------------------------------- tokens from flops


def test_tokens_are_flops_over_six_params_when_missing(tmp_path):
    header = ("d_model", "n_layers", "params", "flops", "loss")
    rows = [(r[0], r[1], 1e6 * r[0], 6 * 1e6 * r[0] * r[2], r[3]) for r in ROWS]
    runs = load_runs(write_csv(tmp_path / "runs.csv", header, rows))
    assert runs.roles["tokens"] == "tokens"
    np.testing.assert_allclose(runs.column("tokens"), [r[2] for r in ROWS], rtol=1e-15)
    assert TOKENS_FROM_FLOPS_NOTE in runs.notes
    assert "flops / (6 * params)" in TOKENS_FROM_FLOPS_NOTE


def test_tokens_in_the_table_win_over_flops(tmp_path):
    header = ("d_model", "n_layers", "tokens", "params", "flops", "loss")
    rows = [(r[0], r[1], r[2], 1.0, 1.0, r[3]) for r in ROWS]
    runs = load_runs(write_csv(tmp_path / "runs.csv", header, rows))
    np.testing.assert_array_equal(runs.column("tokens"), [r[2] for r in ROWS])
    assert TOKENS_FROM_FLOPS_NOTE not in runs.notes


def test_no_tokens_and_no_flops_says_both_ways_to_get_them(tmp_path):
    header = ("d_model", "n_layers", "params", "loss")
    path = write_csv(tmp_path / "runs.csv", header, [(r[0], r[1], 1e8, r[3]) for r in ROWS])
    with pytest.raises(DataError, match=re.escape(
            "no column for tokens (or both flops and params, to compute tokens = flops / (6 * params)); "
            "looked for tokens, num_tokens, training_tokens, n_tokens, D;")):
        load_runs(path)


def test_epoch_tokens_equal_the_published_num_tokens(chinchilla_wd, epoch_csv):
    epoch = load_runs(epoch_csv, require=("params", "tokens", "loss"))
    wd = load_runs(chinchilla_wd)
    assert TOKENS_FROM_FLOPS_NOTE in epoch.notes
    np.testing.assert_allclose(epoch.column("tokens"), wd.column("tokens"), rtol=1e-12)
    np.testing.assert_allclose(epoch.column("loss"), wd.column("loss"), rtol=1e-15)


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(("text", "value"), [
    ("1.3B", 1.3e9), ("70M", 7e7), ("300B", 3e11), ("1e9", 1e9), ("1,000", 1000.0), ("2.5k", 2500.0),
    ("1T", 1e12), ("1,000,000", 1e6), ("12,345.5", 12345.5), ("1.3b", 1.3e9), ("70m", 7e7), ("2.5K", 2500.0),
    ("6.7B", 6.7e9), ("2.01k", 2010.0), ("4.03k", 4030.0), ("8.05M", 8.05e6), ("175B", 1.75e11),
    ("0.5e6", 5e5), ("1.1e3k", 1.1e6), (".5", 0.5), ("3.", 3.0), ("+4", 4.0), ("-5", -5.0), ("1 B", 1e9),
    ("  42  ", 42.0), ("1E-3", 1e-3), (7, 7.0), (2.5, 2.5), (np.int64(3), 3.0), (np.float32(0.5), 0.5),
])
def test_numbers_people_write_parse_exactly(text, value):
    parsed = parse_number(text)
    assert isinstance(parsed, float)
    assert parsed == value


@pytest.mark.parametrize("text", ["", "  ", "NA", "n/a", "null", "None", None])
def test_missing_cells_parse_to_none(text):
    assert parse_number(text) is None


@pytest.mark.parametrize("text", ["1.3x", "B", "1,00", "1,0000", "1..3", "1e", "12 apples", "0x10", "1.3BB",
                                  "five", "1_000", "--1", True, "1.3 x 10^9"])
def test_anything_else_is_not_a_number(text):
    with pytest.raises(ValueError):
        parse_number(text)


def test_nan_and_inf_parse_so_that_they_can_be_reported():
    assert np.isnan(parse_number("NaN"))
    assert parse_number("inf") == np.inf
    assert parse_number("-Infinity") == -np.inf


def test_suffixed_numbers_in_a_table(tmp_path):
    header = ("model", "params", "tokens", "loss")
    rows = [("a", "70M", "1.3B", "3.1"), ("b", "1.3B", "300B", "2.4"), ("c", "1T", "1,000", "2.0"),
            ("d", "2.5k", "1e9", "3.5")]
    runs = load_runs(write_csv(tmp_path / "runs.csv", header, rows), require=("params", "tokens", "loss"))
    assert list(runs.column("params")) == [7e7, 1.3e9, 1e12, 2500.0]
    assert list(runs.column("tokens")) == [1.3e9, 3e11, 1000.0, 1e9]


def test_non_numeric_cells_are_named_by_row_and_value(tmp_path):
    rows = [list(r) for r in ROWS * 4]
    for row_number in (4, 9, 17):
        rows[row_number - 1][0] = "1.3x"
    path = write_csv(tmp_path / "runs.csv", COLUMNS, rows)
    with pytest.raises(DataError) as info:
        load_runs(path)
    assert str(info.value) == (f"{path}: column 'd_model' has 3 non-numeric values (rows 4, 9, 17): "
                               f"'1.3x', '1.3x', '1.3x'")


def test_long_lists_of_rows_are_cut_short(tmp_path):
    rows = [list(r) for r in ROWS * 3]
    for row in rows:
        row[2] = "lots"
    path = write_csv(tmp_path / "runs.csv", COLUMNS, rows)
    with pytest.raises(DataError, match=re.escape("(rows 1, 2, 3, 4, 5, ... (15 in all))")):
        load_runs(path)


# ---------------------------------------------------------------- --exclude-top-loss

TIED_LOSSES = [5.0, 4.0, 4.0, 4.0, 3.0, 2.0, 1.0]


@pytest.mark.parametrize(("k", "kept", "excluded"), [
    (0, [5.0, 4.0, 4.0, 4.0, 3.0, 2.0, 1.0], 0),
    (1, [4.0, 4.0, 4.0, 3.0, 2.0, 1.0], 1),
    (2, [3.0, 2.0, 1.0], 4),  # the 2nd-highest is 4, tied three times: all three go
    (3, [3.0, 2.0, 1.0], 4),
    (4, [3.0, 2.0, 1.0], 4),
    (5, [2.0, 1.0], 5),
    (7, [], None),
])
def test_exclude_top_loss_keeps_rows_strictly_below_the_kth_highest(k, kept, excluded, tmp_path):
    rows = [(256 * (i + 1), 4 + i, 1e9 * (i + 1), loss) for i, loss in enumerate(TIED_LOSSES)]
    path = write_csv(tmp_path / "runs.csv", COLUMNS, rows)
    if not kept:
        with pytest.raises(DataError, match=rf"no rows left after exclude_top_loss={k}$"):
            load_runs(path, exclude_top_loss=k)
        return
    runs = load_runs(path, exclude_top_loss=k)
    assert list(runs.column("loss")) == kept
    assert len(runs) == len(kept)
    assert runs.n_excluded == excluded
    assert runs.n_total == len(TIED_LOSSES)
    kept_rows = list(range(len(TIED_LOSSES) - len(kept), len(TIED_LOSSES)))  # losses are in falling order
    assert list(runs.kept_rows) == kept_rows
    assert list(runs.column("depth")) == [4 + i for i in kept_rows]  # the other columns get the same cut
    if k:
        assert any(f"excluded {excluded} rows" in note for note in runs.notes)


def test_exclude_top_loss_more_than_the_rows(tmp_path):
    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    with pytest.raises(DataError) as info:
        load_runs(path, exclude_top_loss=6)
    assert str(info.value) == f"{path}: exclude_top_loss=6 is more than the 5 rows"


def test_exclude_top_loss_must_not_be_negative(tmp_path):
    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    with pytest.raises(DataError, match="exclude_top_loss must be 0 or more, not -1"):
        load_runs(path, exclude_top_loss=-1)


def test_chinchilla_width_depth_top_40_excluded(chinchilla_wd):
    runs = load_runs(chinchilla_wd, exclude_top_loss=40)
    assert len(runs) == 203
    assert runs.n_excluded == 42
    assert runs.n_total == 245
    everything = load_runs(chinchilla_wd)
    threshold = np.sort(everything.column("loss"))[::-1][39]
    assert runs.column("loss").max() < threshold
    assert int((everything.column("loss") >= threshold).sum()) == 42


def test_epoch_top_5_excluded(epoch_csv):
    runs = load_runs(epoch_csv, require=("params", "tokens", "loss"), exclude_top_loss=5)
    assert len(runs) == 240
    assert runs.n_excluded == 5


# ---------------------------------------------------------------- --drop-missing


def test_drop_missing_drops_only_rows_empty_in_the_columns_used(tmp_path):
    header = (*COLUMNS, "notes")
    rows = [list(r) + [""] for r in ROWS]
    rows[1][3] = ""
    rows[3][0] = "NA"
    path = write_csv(tmp_path / "runs.csv", header, rows)
    with pytest.raises(DataError, match=r"column 'd_model' has 1 empty cell \(row 4\); fill them or pass "
                                        r"drop_missing"):
        load_runs(path)
    runs = load_runs(path, drop_missing=True)
    assert len(runs) == 3
    assert runs.n_excluded == 2
    assert list(runs.kept_rows) == [0, 2, 4]
    assert "2 rows with empty cells dropped (drop_missing)" in runs.notes


def test_drop_missing_then_exclude_top_loss(tmp_path):
    rows = [list(r) for r in ROWS]
    rows[0][3] = ""  # the highest loss is the one missing
    path = write_csv(tmp_path / "runs.csv", COLUMNS, rows)
    runs = load_runs(path, drop_missing=True, exclude_top_loss=1)
    assert list(runs.column("loss")) == [2.98, 2.61, 2.33]
    assert runs.n_excluded == 2


# ---------------------------------------------------------------- joining an architecture table


def _curves_and_configs(tmp_path: Path, curve_models=("small", "medium", "xl")) -> tuple[Path, Path]:
    curves = write_csv(tmp_path / "curves.csv", ("model", "tokens", "loss"),
                       [(m, 1e9 * (i + 1), 3.0 - 0.1 * i) for i, m in enumerate(curve_models)])
    configs = write_csv(tmp_path / "configs.csv", ("model_name", "d_model", "n_layers"),
                        [("GPT-3 Small", 768, 12), ("GPT-3 Medium", 1024, 24), ("GPT-3 XL", 2048, 24)])
    return curves, configs


def test_join_matches_keys_loosely_and_says_so(tmp_path):
    curves, configs = _curves_and_configs(tmp_path)
    runs = load_runs(curves, configs=configs, on="model=model_name")
    assert list(runs.column("width")) == [768, 1024, 2048]
    assert list(runs.column("depth")) == [12, 24, 24]
    note = next(n for n in runs.notes if n.startswith("joined"))
    assert "'small' -> 'GPT-3 Small'" in note


def test_join_on_one_shared_key_name(tmp_path):
    curves = write_csv(tmp_path / "curves.csv", ("model", "tokens", "loss"),
                       [("a", 1e9, 3.0), ("b", 2e9, 2.5)])
    configs = write_csv(tmp_path / "configs.csv", ("model", "d_model", "n_layers"),
                        [("a", 64, 2), ("b", 128, 4)])
    for on in ("model", None):  # a single shared column needs no --on
        runs = load_runs(curves, configs=configs, on=on)
        assert list(runs.column("width")) == [64, 128]


def test_join_renames_clashing_columns(tmp_path):
    curves = write_csv(tmp_path / "curves.csv", ("model", "tokens", "loss", "lr"), [("a", 1e9, 3.0, 0.1)])
    configs = write_csv(tmp_path / "configs.csv", ("model", "d_model", "n_layers", "lr"), [("a", 64, 2, 0.2)])
    runs = load_runs(curves, configs=configs, on="model")
    assert list(runs.column("lr")) == [0.1]
    assert list(runs.column("lr_config")) == [0.2]


def test_unmatched_keys_are_listed_with_the_closest_names(tmp_path):
    curves, configs = _curves_and_configs(tmp_path, ("small", "smal", "tiny", "xl"))
    with pytest.raises(DataError) as info:
        load_runs(curves, configs=configs, on="model=model_name")
    assert str(info.value) == (f"{curves}: 2 values of 'model' have no row in {configs} ('model_name'): "
                               f"'smal' (closest: 'GPT-3 Small'); 'tiny'")


def test_a_repeated_key_in_the_configs_is_an_error(tmp_path):
    curves, _ = _curves_and_configs(tmp_path)
    configs = write_csv(tmp_path / "dup.csv", ("model_name", "d_model", "n_layers"),
                        [("small", 768, 12), ("small", 1024, 24)])
    with pytest.raises(DataError, match="key column 'model_name' repeats 'small'"):
        load_runs(curves, configs=configs, on="model=model_name")


@pytest.mark.parametrize(("on", "message"), [
    ("name", "curves.csv: on: no column 'name'"),
    ("model=name", "configs.csv: on: no column 'name' (closest: 'model_name'"),
    (None, "configs needs on='KEY' or on='LEFT=RIGHT'"),
])
def test_join_key_errors(on, message, tmp_path):
    curves, configs = _curves_and_configs(tmp_path)
    with pytest.raises(DataError, match=re.escape(message)):
        load_runs(curves, configs=configs, on=on)


def test_on_without_configs_is_an_error(tmp_path):
    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    with pytest.raises(DataError, match=r"^on is only used with configs='FILE'$"):
        load_runs(path, on="model")


@pytest.fixture(scope="module")
def gpt3_files() -> tuple[Path, Path]:
    return shared_file("data", "gpt3_curves.csv"), shared_file("data", "gpt3_configs.csv")


@pytest.fixture(scope="module")
def gpt3_cells(gpt3_files) -> list[dict]:
    with gpt3_files[0].open(newline="") as f:
        return list(csv.DictReader(f))


def test_gpt3_curves_need_drop_missing(gpt3_files, gpt3_cells):
    curves, configs = gpt3_files
    n_empty = sum(1 for row in gpt3_cells if not row["val_loss"].strip())
    first = [i + 1 for i, row in enumerate(gpt3_cells) if not row["val_loss"].strip()][:5]
    with pytest.raises(DataError) as info:
        load_runs(curves, configs=configs, on="model=model_name", columns=["tokens=step"])
    assert str(info.value) == (
        f"{curves}: column 'val_loss' has {n_empty} empty cells (rows {', '.join(map(str, first))}, ... "
        f"({n_empty} in all)); fill them or pass drop_missing")


@pytest.mark.parametrize("loss", ["val_loss", "train_loss"])
def test_gpt3_join_gives_every_model_its_architecture(loss, gpt3_files, gpt3_cells):
    curves, configs = gpt3_files
    columns = ["tokens=step"] + ([f"loss={loss}"] if loss != "val_loss" else [])
    runs = load_runs(curves, configs=configs, on="model=model_name", columns=columns, drop_missing=True)
    expected_rows = [row for row in gpt3_cells if row[loss].strip()]
    assert len(runs) == len(expected_rows)
    assert runs.n_excluded == len(gpt3_cells) - len(expected_rows)
    assert runs.roles["loss"] == loss
    models = runs.column("model")
    assert set(models) == set(GPT3_ARCHITECTURE)
    for model, (width, depth) in GPT3_ARCHITECTURE.items():
        rows = models == model
        assert rows.any()
        assert set(runs.column("width")[rows]) == {width}, model
        assert set(runs.column("depth")[rows]) == {depth}, model
    np.testing.assert_array_equal(runs.column("loss"), [float(row[loss]) for row in expected_rows])
    assert any("loose key matches" in note for note in runs.notes)


# ---------------------------------------------------------------- raw tables


def test_read_table_keeps_names_in_file_order(tmp_path):
    table = read_table(write_csv(tmp_path / "runs.csv", COLUMNS, ROWS))
    assert table.names == COLUMNS
    assert len(table) == len(ROWS)
    assert table.cells["d_model"][0] == "256"


@pytest.mark.parametrize(("name", "content", "message"), [
    ("runs.csv", "", "the table is empty"),
    ("runs.csv", "a,b\n", "the table is empty (a header but no rows)"),
    ("runs.csv", "a,,b\n1,2,3\n", "the header has an empty column name (column 2)"),
    ("runs.csv", "a,b,a\n1,2,3\n", "duplicate column names: 'a'"),
    ("runs.csv", "a,b\n1,2\n1,2,3\n", "line 3 has 3 fields, the header has 2"),
    ("runs.csv", "a,b\n\n1,2\n\n1,2,3\n", "line 5 has 3 fields, the header has 2"),  # the file's line
    ("runs.tsv", "a\tb\n1\t2\t3\n", "line 2 has 3 fields, the header has 2"),
    ("runs.json", "[]", "the table is empty (no columns)"),
    ("runs.json", '{"a": [1, 2], "b": [1]}', "JSON columns have different lengths [1, 2]"),
    ("runs.json", '{"a": 1}', "JSON must be a list of records (objects) or an object of columns"),
    ("runs.json", "[1, 2]", "JSON must be a list of records (objects) or an object of columns"),
    ("runs.json", "{", "not valid JSON (line 1: Expecting property name enclosed in double quotes)"),
    ("runs.jsonl", '{"a": 1}\n[1]\n', "line 2 is not a JSON object"),
    ("runs.jsonl", '{"a": 1}\n\n{"a": \n', "line 3 is not valid JSON (Expecting value)"),
    ("runs.csv", "a,b\n1,\x00\n", "not a text file (contains NUL bytes)"),
    ("runs.csv.gz", "not gzip", "cannot decompress"),
    ("runs.parquet", "PAR1 but not really", "not a readable Parquet file"),
])
def test_unreadable_tables(name, content, message, tmp_path):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_table(path)
    assert str(info.value).startswith(f"{path}: {message}")


# ---------------------------------------------------------------- big tables: fast paths = slow ones

PLAIN_TEXTS = [("a,b\n1,2\n3,4\n", True), ("a,b\n1,2\n3,4", True), ("a, b \n 1 ,2\n", True),
               ("é,b\nü,2\n", True), ("x\n1\n2\n", True), ("a,b\n1,2\n\n3,4\n", False),
               ("a,b\n1,2\n , \n", False), ("a,b\n1\n", False), ("a,b\n", False),
               ('a,b\n"1,5",2\n', False), ("a,b\r\n1,2\r\n", False), ("x\n1\n2\n\n", False)]


@pytest.mark.parametrize(("text", "fast_path"), PLAIN_TEXTS)
def test_fast_csv_split_reads_what_the_csv_module_reads(text, fast_path):
    """Plain tables take the fast split and get the csv module's cells; anything unusual (quotes, CRs,
    blank or ragged lines) is left to the csv module."""
    import csv
    import io as stdio

    from scaling_cli.readers import _split_plain

    fast = _split_plain(text, ",")
    assert (fast is not None) == fast_path
    if fast is not None:
        lines = [line for line in csv.reader(stdio.StringIO(text))
                 if line and any(c.strip() for c in line)]
        names, columns = fast
        assert names == [n.strip() for n in lines[0]]
        cells = zip(*lines[1:], strict=True)
        assert columns == {n.strip(): tuple(col) for n, col in zip(lines[0], cells, strict=True)}


@pytest.mark.parametrize("cells", [["1", "2.5e3", "-.5", "+1.", "7E-3"], ["1", ""], ["1e", "2"], ["1.3B"],
                                   ["1,000"], ["1_000"], [" 5"], ["nan"], ["1e999"],
                                   ["0.1", "0.30000000000000004"]])
def test_plain_number_fast_path_agrees_with_parse_number(cells):
    from scaling_cli.io import _plain_numbers, parse_number

    fast = _plain_numbers(cells)
    plain = all(c and set(c) <= set("0123456789.eE+-") for c in cells) and cells != ["1e", "2"]
    assert (fast is not None) == plain
    if fast is not None:
        assert [float(v) for v in fast] == [parse_number(c) for c in cells]

# ---------------------------------------------------------------- from a notebook (issue 11)


def test_load_runs_takes_a_dataframe_with_nan_as_empty(tmp_path):
    import pandas as pd

    path = write_csv(tmp_path / "runs.csv", COLUMNS, ROWS)
    from_file = load_runs(path)
    frame = pd.read_csv(path)
    from_frame = load_runs(frame)
    assert from_frame.path == "<DataFrame>" and from_frame.roles == from_file.roles
    for name in from_file.data:
        np.testing.assert_array_equal(from_frame.data[name], from_file.data[name])
    frame.loc[2, "d_model"] = np.nan
    with pytest.raises(DataError, match=r"column 'd_model' has 1 empty cell \(row 3\)"):
        load_runs(frame)
    assert len(load_runs(frame, drop_missing=True)) == len(ROWS) - 1


def test_load_runs_needs_only_the_columns_of_the_form(tmp_path):
    """Epoch's table has no width: with form="chinchilla" only params, tokens (or flops) and loss."""
    path = write_csv(tmp_path / "epoch.csv", ("Model Size", "Training FLOP", "loss"),
                     [(1e8, 6e18, 3.0), (4e8, 1e20, 2.7), (1.6e9, 2e21, 2.4)])
    with pytest.raises(DataError, match="no column for width.*or pass form="):
        load_runs(path)
    runs = load_runs(path, form="chinchilla")
    assert runs.roles == {"loss": "loss", "params": "Model Size", "flops": "Training FLOP",
                          "tokens": "tokens"}
    np.testing.assert_allclose(runs.column("tokens"), [6e18 / 6e8, 1e20 / 2.4e9, 2e21 / 9.6e9])
    assert len(load_runs(path, form="kaplan")) == 3  # a shipped YAML form, by name
