"""Forms written in YAML: a spec read safely, checked, and turned into a `Form` with analytic derivatives.

The work is split by stage: `formula` parses a formula as data (an `ast` allow-list, never `eval`) and
rebuilds it in sympy; `program` compiles sympy expressions into numpy steps; `spec_form` holds the
resulting `SpecForm` and its default grids. This module reads the YAML (size limits, no anchors or
aliases, no repeated keys), checks the spec in two stages, its shape (known keys, the right types)
and then its meaning (every symbol a parameter or a variable, every parameter used, bounds ordered,
starts inside them), and builds the form. Whether a variable's column exists is checked when the
table is loaded (`io.load_runs`).

The names of those modules stay importable from here (`from scaling_cli.spec import Program`).
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
from pathlib import Path
from typing import Any, Sequence

from .errors import SpecError
from .formula import (  # noqa: F401  (re-exported: the public names of the parser live on here)
    CONSTANTS,
    EXACT_INTEGER_LIMIT,
    FUNCTIONS,
    MAX_EXPRESSION_CHARS,
    MAX_EXPRESSION_DEPTH,
    MAX_EXPRESSION_NODES,
    MAX_FUNCTION_NESTING,
    Formula,
    _clip,
    _type_name,
    parse_formula,
    to_sympy,
)
from .objectives import OBJECTIVES
from .program import Program  # noqa: F401  (re-exported)
from .spec_form import (  # noqa: F401  (re-exported)
    GRID_MAGNITUDES,
    MAX_GRID_PER_AXIS,
    MAX_GRID_POINTS,
    MAX_SYMBOLIC_HESSIAN_NODES,
    CompiledForm,
    SpecForm,
    compile_form,
    default_grids,
)

MAX_FILE_BYTES = 64 * 1024
MAX_YAML_NESTING = 32
MAX_PARAMETERS = 40
MAX_VARIABLES = 20
MAX_DERIVED = 20
MAX_NAME_CHARS = 100
MAX_COLUMN_CHARS = 200

TOP_KEYS = ("name", "expression", "variables", "response", "parameters", "derived", "objective", "delta",
            "description", "reference", "cost", "params")
REQUIRED_KEYS = ("expression", "variables", "parameters")
PARAMETER_KEYS = ("init", "min", "max", "value", "fixed")
DEFAULT_RESPONSE = "loss"
DEFAULT_OBJECTIVE = "log-ls"
EXAMPLE_PARAMETER = "{init: 1.0, min: 0}"

_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?:inf|infinity)$",
                          re.IGNORECASE)


# ---------------------------------------------------------------- reading YAML


def _yaml_loader():
    """A SafeLoader that refuses anchors and aliases (no alias bombs) and repeated keys."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise _YamlRefused("YAML anchors and aliases (& and *) are not allowed in a form file",
                                   event.start_mark)
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the constructor reports it
                    repeated = False
                if repeated:
                    raise _YamlRefused(f"key '{key}' appears twice", key_node.start_mark)
            return super().construct_mapping(node, deep)

    return Loader


class _YamlRefused(Exception):
    def __init__(self, message: str, mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def read_yaml(path: str | Path) -> Any:
    """The plain data in a small YAML file, read safely: at most MAX_FILE_BYTES, UTF-8 text, no anchors
    or aliases, no repeated keys, shallow flow nesting. Raises `SpecError` naming the file and line."""
    return load_yaml_text(read_yaml_text(path), str(path))


def read_yaml_text(path: str | Path) -> str:
    """The text of a small YAML file (at most MAX_FILE_BYTES, UTF-8, no NUL bytes), not yet parsed."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError(f"{source}: the file is {size:,} bytes; a form file may be at most "
                            f"{MAX_FILE_BYTES:,}")
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{source}: cannot read the form file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(f"{source}: the file is larger than {MAX_FILE_BYTES:,} bytes")
    if b"\x00" in raw:
        raise SpecError(f"{source}: not a text file (it contains NUL bytes); a form file is YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte {exc.start}); a form file is YAML text") from None
    return text


def load_yaml_text(text: str, source: str) -> Any:
    """The plain data in YAML `text` (from `source`, for messages), read as safely as `read_yaml`."""
    import yaml

    if len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise SpecError(f"{source}: the text is larger than {MAX_FILE_BYTES:,} bytes")
    depth = _flow_nesting(text)
    if depth > MAX_YAML_NESTING:
        raise SpecError(f"{source}: the YAML is nested {depth} levels deep; a form file needs a few")
    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: plain data only
    except _YamlRefused as exc:
        raise SpecError(f"{source}: line {exc.mark.line + 1}: {exc.message}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: {where}not valid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}: the YAML is nested too deeply") from None


def _flow_nesting(text: str) -> int:
    """The deepest nesting of YAML flow collections ([ and {) outside quotes and comments: a cheap
    look before the parser, whose composer recurses once per level."""
    deepest = depth = 0
    quote = None
    comment = False
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            comment = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest




# ---------------------------------------------------------------- the spec: shape



def _did_you_mean(word: str, options: Sequence[str]) -> str:
    near = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


class _Checker:
    """Raises SpecErrors that read `SOURCE: key.path: what is wrong`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> None:
        raise SpecError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def where(self, path: str) -> str:
        return f"{self.source}: {path}"

    def text(self, value: Any, path: str, *, limit: int | None = None) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be text, not {_type_name(value)}")
        if limit is not None and len(value) > limit:
            self.fail(path, f"is {len(value)} characters long; at most {limit} are allowed")
        return value

    def mapping(self, value: Any, path: str, example: str) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"must be a mapping such as {example}, not {_type_name(value)}")
        for key in value:
            if not isinstance(key, str):
                self.fail(path, f"the key {key!r} must be a name (text), not {_type_name(key)}")
        return value

    def number(self, value: Any, path: str, *, allow_infinite: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            self.fail(path, f"must be a number, not {_type_name(value)}")
        if isinstance(value, str):
            # YAML 1.1 reads 1e9 (no dot) as text; accept numbers written that way
            if not _NUMBER_TEXT.match(value.strip()):
                self.fail(path, f"must be a number, not the text '{_clip(value)}'")
            value = float(value.strip())
        try:
            value = float(value)
        except OverflowError:
            self.fail(path, "is too large a number")
        if math.isnan(value) or (math.isinf(value) and not allow_infinite):
            self.fail(path, f"must be a finite number, not {value}")
        return value

    def symbol(self, name: str, path: str) -> None:
        if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
            self.fail(path, f"'{_clip(name)}' is not a valid symbol name (letters, digits and _, not "
                            f"starting with a digit)")
        if len(name) > MAX_NAME_CHARS:
            self.fail(path, f"the name is longer than {MAX_NAME_CHARS} characters")
        if name in FUNCTIONS or name in CONSTANTS:
            kind = "function" if name in FUNCTIONS else "constant"
            self.fail(path, f"'{name}' is the name of a {kind}; choose another name")


def _check_shape(doc: Any, check: _Checker) -> dict:
    """Stage 1: the keys and the types of their values."""
    if doc is None:
        check.fail("", f"the file is empty; a form needs at least {', '.join(REQUIRED_KEYS)}")
    if not isinstance(doc, dict):
        check.fail("", f"the top level must be a mapping with keys such as {', '.join(REQUIRED_KEYS)}, "
                       f"not {_type_name(doc)}")
    for key in doc:
        if not isinstance(key, str) or key not in TOP_KEYS:
            check.fail(str(key), f"unknown key{_did_you_mean(key, TOP_KEYS)}; the keys are "
                                 f"{', '.join(TOP_KEYS)}")
    for key in REQUIRED_KEYS:
        if key not in doc:
            check.fail(key, "is missing")
    out: dict[str, Any] = {}
    for key in ("name", "description", "reference", "objective"):
        if doc.get(key) is not None:
            out[key] = check.text(doc[key], key, limit=2000 if key in ("description", "reference")
                                  else MAX_NAME_CHARS)
    if "name" in out and not (out["name"].strip() and out["name"].isprintable()):
        check.fail("name", "must be a non-empty name on one line")
    out["expression"] = check.text(doc["expression"], "expression")
    for key in ("cost", "params"):  # compute and parameter-count models, for `scalefit optimize`
        if doc.get(key) is not None:
            out[key] = check.text(doc[key], key)
    out["response"] = check.text(doc.get("response", DEFAULT_RESPONSE), "response")
    if doc.get("delta") is not None:
        out["delta"] = check.number(doc["delta"], "delta")

    variables = check.mapping(doc["variables"], "variables", "{m: width, D: tokens}")
    if not variables:
        check.fail("variables", "needs at least one variable, e.g. {m: width}")
    if len(variables) > MAX_VARIABLES:
        check.fail("variables", f"has {len(variables)} entries; at most {MAX_VARIABLES} are allowed")
    for symbol, column in variables.items():
        if not isinstance(column, str) or not column.strip():
            check.fail(f"variables.{symbol}", f"must be a column name or role (width, depth, tokens, "
                                              f"params, flops, ...), not {_type_name(column)}")
        check.text(column, f"variables.{symbol}", limit=MAX_COLUMN_CHARS)
        if not column.isprintable():
            check.fail(f"variables.{symbol}", "the column name contains control characters")
    out["variables"] = dict(variables)

    parameters = check.mapping(doc["parameters"], "parameters", f"{{c: {EXAMPLE_PARAMETER}}}")
    if not parameters:
        check.fail("parameters", "needs at least one parameter")
    if len(parameters) > MAX_PARAMETERS:
        check.fail("parameters", f"has {len(parameters)} entries; at most {MAX_PARAMETERS} are allowed")
    out["parameters"] = {}
    for name, entry in parameters.items():
        path = f"parameters.{name}"
        entry = {} if entry is None else check.mapping(entry, path, EXAMPLE_PARAMETER)
        settings: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in PARAMETER_KEYS:
                check.fail(f"{path}.{key}", f"unknown setting{_did_you_mean(key, PARAMETER_KEYS)}; "
                                            f"the settings are {', '.join(PARAMETER_KEYS)}")
            if key == "fixed":
                if not isinstance(value, bool):
                    check.fail(f"{path}.fixed", f"must be true or false, not {_type_name(value)}")
                settings[key] = value
            elif value is not None:
                settings[key] = check.number(value, f"{path}.{key}", allow_infinite=key in ("min", "max"))
        out["parameters"][name] = settings

    derived = doc.get("derived")
    out["derived"] = {}
    if derived is not None:
        derived = check.mapping(derived, "derived", "{ratio: alpha_l / alpha_m}")
        if len(derived) > MAX_DERIVED:
            check.fail("derived", f"has {len(derived)} entries; at most {MAX_DERIVED} are allowed")
        for name, text in derived.items():
            out["derived"][name] = check.text(text, f"derived.{name}")
    return out


# ---------------------------------------------------------------- the spec: meaning


def _check_meaning(spec: dict, check: _Checker) -> dict:
    """Stage 2: what the values mean. Returns the parsed formulas and the parameter settings."""
    params = list(spec["parameters"])
    variables = spec["variables"]
    for p in params:
        check.symbol(p, f"parameters.{p}")
    for v in variables:
        check.symbol(v, f"variables.{v}")
        if v in spec["parameters"]:
            check.fail(f"variables.{v}", f"'{v}' is also a parameter; a symbol is one or the other")

    formula = parse_formula(spec["expression"], check.where("expression"))
    for name in formula.names:
        if name not in spec["parameters"] and name not in variables and name not in CONSTANTS:
            if name in FUNCTIONS:
                check.fail("expression", f"'{name}' is a function: call it, as in {name}(x) (column "
                                         f"{formula.columns[name]})")
            check.fail("expression", f"unknown symbol '{name}' at column {formula.columns[name]}; declare "
                                     f"it under parameters or variables{_did_you_mean(name, params)}")
    for p in params:
        if p not in formula.names:
            check.fail(f"parameters.{p}", f"'{p}' does not appear in the expression")

    response_formula, response_names = None, {}
    response_text = spec["response"].strip()
    if response_text and (response_text.isidentifier() or not _looks_like_formula(response_text)):
        response_names = {response_text: variables.get(response_text, response_text)}
    else:
        response_formula = parse_formula(response_text, check.where("response"))
        if not response_formula.names or all(n in CONSTANTS for n in response_formula.names):
            check.fail("response", "must use at least one column, e.g. loss or log(loss)")
        for name in response_formula.names:
            if name in spec["parameters"]:
                check.fail("response", f"'{name}' is a parameter; the response is computed from "
                                       f"columns only")
            if name in FUNCTIONS:
                check.fail("response", f"'{name}' is a function: call it, as in {name}(loss)")
            if name not in CONSTANTS:
                response_names[name] = variables.get(name, name)
    for v in variables:
        if v not in formula.names and v not in response_names:
            check.fail(f"variables.{v}", f"'{v}' does not appear in the expression")

    objective = spec.get("objective", DEFAULT_OBJECTIVE)
    if objective not in OBJECTIVES:
        check.fail("objective", f"unknown objective '{_clip(objective)}'"
                                f"{_did_you_mean(objective, OBJECTIVES)}; use one of {', '.join(OBJECTIVES)}")
    delta = spec.get("delta")
    if delta is not None:
        if objective != "huber":
            check.fail("delta", f"is only used with objective: huber (this form's objective is {objective})")
        if delta <= 0:
            check.fail("delta", f"must be positive, not {delta:g}")

    lower, upper, init, fixed = {}, {}, {}, {}
    for p, settings in spec["parameters"].items():
        path = f"parameters.{p}"
        lo, hi = settings.get("min", -math.inf), settings.get("max", math.inf)
        if lo == math.inf or hi == -math.inf:
            check.fail(path, f"the bounds min {lo} and max {hi} leave no room")
        if lo >= hi:
            check.fail(path, f"min ({lo:g}) must be below max ({hi:g}); to hold a parameter at a value use "
                             f"{{value: {lo:g}, fixed: true}}")
        if settings.get("fixed"):
            if "value" not in settings:
                check.fail(path, "fixed: true needs the value to hold it at, e.g. {value: 0.3, fixed: true}")
            if "init" in settings:
                check.fail(f"{path}.init", "a fixed parameter does not start anywhere: give only its value")
            if not lo <= settings["value"] <= hi:
                check.fail(f"{path}.value", f"{settings['value']:g} is outside [{lo:g}, {hi:g}]")
            fixed[p] = settings["value"]
        elif "value" in settings:
            check.fail(f"{path}.value", "value is the value of a fixed parameter: add fixed: true, or use "
                                        "init for a starting value")
        if "init" in settings:
            if not lo <= settings["init"] <= hi:
                check.fail(f"{path}.init", f"{settings['init']:g} is outside the bounds [{lo:g}, {hi:g}]")
            init[p] = settings["init"]
        if math.isfinite(lo):
            lower[p] = lo
        if math.isfinite(hi):
            upper[p] = hi

    derived = {}
    for name, text in spec["derived"].items():
        check.symbol(name, f"derived.{name}")
        if name in spec["parameters"] or name in variables:
            check.fail(f"derived.{name}", f"'{name}' is already a parameter or variable")
        f = parse_formula(text, check.where(f"derived.{name}"))
        for n in f.names:
            if n not in spec["parameters"] and n not in CONSTANTS:
                check.fail(f"derived.{name}", f"'{n}' at column {f.columns[n]} is not a parameter (derived "
                                              f"quantities are functions of the parameters)")
        derived[name] = f
    return {"formula": formula, "response_formula": response_formula, "response_names": response_names,
            "objective": objective, "delta": delta, "lower": lower, "upper": upper, "init": init,
            "fixed": fixed, "derived": derived}


def _looks_like_formula(text: str) -> bool:
    """A response such as "Model Size" is a column name; one with operators or calls is a formula."""
    return bool(re.search(r"[-+*/()]", text))


# ---------------------------------------------------------------- entry points


def parse_form(mapping: Any, source: str = "<string>", *, text: str | None = None) -> SpecForm:
    """A `Form` from a spec already read into Python values (e.g. by yaml.safe_load), checked in two
    stages; raises `SpecError` with `SOURCE: key.path: what is wrong`. The form keeps `text`, the YAML
    it was read from (by default the values written out as YAML), so that it can be saved.

    >>> form = parse_form({"expression": "c * N**(-a) + L0", "variables": {"N": "params"},
    ...                    "parameters": {"c": {"min": 0}, "a": {"min": 0, "max": 2}, "L0": {"min": 0}}})
    >>> form.name, form.params, form.linear
    ('custom', ('c', 'a', 'L0'), ('c', 'L0'))
    """
    check = _Checker(source)
    spec = _check_shape(mapping, check)
    meaning = _check_meaning(spec, check)
    from . import form_cache

    params = list(spec["parameters"])
    entry = form_cache.key(mapping, source)
    compiled, symbolic = form_cache.load(entry), None
    response = None if meaning["response_formula"] is None else list(meaning["response_names"])
    if compiled is not None and not compiled.fits(params, list(spec["variables"]), response,
                                                  list(meaning["derived"])):
        compiled = None  # not this spec's: compiled afresh, and the entry written again
    if compiled is None:
        compiled, symbolic = _compile(spec, meaning, check)
        form_cache.store(entry, compiled)
    name = spec.get("name") or (Path(source).stem if source != "<string>" else "custom")
    form = SpecForm(
        name=name, expression=meaning["formula"].text, formula=meaning["formula"], params=params,
        variables=spec["variables"], response=spec["response"].strip(),
        response_names=meaning["response_names"], lower=meaning["lower"], upper=meaning["upper"],
        init=meaning["init"], fixed=meaning["fixed"], objective=meaning["objective"],
        delta=meaning["delta"], description=spec.get("description", ""),
        reference=spec.get("reference", ""), derived_texts={n: f.text for n, f in meaning["derived"].items()},
        compiled=compiled, source=source, symbolic=symbolic)
    form.text = text if text is not None else _yaml_text(mapping)
    form.cost = spec.get("cost")
    form.params_model = spec.get("params")
    return form


def _compile(spec: dict, meaning: dict, check: _Checker):
    """The sympy expression of a checked spec and its `CompiledForm`."""
    import sympy  # only once the spec is known to be sound: a rejected spec is refused in milliseconds

    params = list(spec["parameters"])
    names = params + list(spec["variables"])
    symbols = {n: sympy.Symbol(n, real=True) for n in names}
    try:
        symbolic = to_sympy(meaning["formula"], symbols, check.where("expression"))
        for p in params:
            if symbols[p] not in symbolic.free_symbols:
                check.fail(f"parameters.{p}", f"the expression does not depend on '{p}' (its terms cancel)")
        derived = [(n, to_sympy(f, symbols, check.where(f"derived.{n}")))
                   for n, f in meaning["derived"].items()]
        compiled = compile_form(symbolic, symbols, params, list(spec["variables"]),
                                meaning["response_formula"], list(meaning["response_names"]), derived,
                                check.source)
    except RecursionError:
        check.fail("expression", "the formula is too complex to differentiate; simplify it")
        raise  # not reached
    return compiled, symbolic


def _yaml_text(mapping: Any) -> str | None:
    """YAML text of a spec given as Python values, so that a form made from a mapping can be saved."""
    import yaml

    try:
        return yaml.safe_dump(mapping, sort_keys=False)
    except yaml.YAMLError:
        return None


_COMPILED: dict[tuple[str, str], SpecForm] = {}  # (path, sha256 of its bytes) -> the compiled form


def load_form(path: str | Path) -> SpecForm:
    """Read a form from a YAML file (the shipped ones are in scaling_cli/forms_yaml/, listed by
    `scalefit forms`); raises `SpecError` naming the file and key.

    Compiling a form (sympy's derivatives and common sub-expressions) takes a good part of a second, so
    a process keeps the forms it compiled, keyed by the file's path and content: loading the same file
    again (a notebook comparing forms repeatedly) returns the same form at once, and an edited file is
    compiled afresh.

    >>> from scaling_cli.forms import shipped_form_path
    >>> form = load_form(shipped_form_path("kaplan"))
    >>> form.name, form.required_columns()
    ('kaplan', ('params', 'tokens', 'loss'))
    """
    import hashlib

    path = Path(path)
    try:
        key = (str(path), hashlib.sha256(path.read_bytes()).hexdigest())
    except OSError:
        key = None  # read_yaml_text says what is wrong with the file
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    text = read_yaml_text(path)
    form = parse_form(load_yaml_text(text, str(path)), str(path), text=text)
    if key is not None:
        _COMPILED[key] = form
    return form


def parse_form_text(text: str, source: str = "<string>") -> SpecForm:
    """A form from YAML text (as `load_form` reads from a file); the form keeps the text."""
    return parse_form(load_yaml_text(text, source), source, text=text)
