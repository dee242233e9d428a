"""README.md is what people copy: every dotted API name it mentions must exist, with the keywords it shows,
and its code must work after a plain ``import regframe``. Names are read from the README itself, so a
rename that forgets the README fails here."""

from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
TEXT = README.read_text()

# Subpackages whose names the README also uses without the ``regframe.`` prefix (``plot.growth``).
SHORT = ("actions", "analysis", "history", "plot", "widgets")
# ``regframe.plot.growth(history, top=10)``, ``plot.sharing_heatmap(matrix)``, ``df.registry.plot_storage()``.
DOTTED = re.compile(
    rf"(?<![\w./-])(?P<name>regframe(?:\.[A-Za-z_]\w*)+|(?:{'|'.join(SHORT)})(?:\.[A-Za-z_]\w*)+)(?P<call>\()?"
)
ACCESSOR = re.compile(r"\.registry\.(?P<name>[A-Za-z_]\w*)(?P<call>\()?")
# The names listed after one (``regframe.plot.storage(usage)`, `stale_tags(stale)` and ...``) share its parent.
SIBLING = re.compile(r"`(?:,\s*|,?\s+and\s+)`(?P<name>[A-Za-z_]\w*)(?P<call>\()?")
# Old names the README mentions only to say what replaced them; each must really be gone.
RETIRED = {"plot.shared_layers"}
API_CHANGES = TEXT[TEXT.index("## API changes") :].split("\n## ", 1)[0]


def resolve(dotted: str) -> object:
    """The object a dotted name names, importing modules along the way as Python would."""
    parts = dotted.split(".")
    if parts[0] != "regframe":
        parts.insert(0, "regframe")
    value: object = importlib.import_module("regframe")
    for depth, part in enumerate(parts[1:], start=2):
        if isinstance(value, types.ModuleType) and not hasattr(value, part):
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(".".join(parts[:depth]))
        value = getattr(value, part)
    return value


def arguments(text: str, start: int) -> str | None:
    """What stands between the parenthesis at ``start`` and its match, or None when it is not closed."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    return None


def keywords(args: str) -> set[str] | None:
    """The keyword names a README call (``f(x, top=10)``) or signature (``f(stale, *, layers=None)``) shows;
    None when it is prose such as ``f(..., delete_manifests=True)`` that neither form parses."""
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError:
        try:
            function = ast.parse(f"def f({args}): pass").body[0]
        except SyntaxError:
            return None
        assert isinstance(function, ast.FunctionDef)
        given = function.args
        return {a.arg for a in given.kwonlyargs} | {a.arg for a in given.args[len(given.args) - len(given.defaults) :]}
    assert isinstance(call, ast.Call)
    return {k.arg for k in call.keywords if k.arg is not None}


def mentions() -> list[tuple[str, str | None, int]]:
    """(dotted name, its arguments if written as a call, line) for every API name the README mentions."""
    found = []
    for pattern, prefix in ((DOTTED, ""), (ACCESSOR, "registry.")):
        for match in pattern.finditer(TEXT):
            name = prefix + match["name"]
            if name.endswith(".py"):
                continue
            parent = name.rsplit(".", 1)[0]
            while match:
                args = arguments(TEXT, match.start("call")) if match["call"] else None
                found.append((name, args, TEXT.count("\n", 0, match.start()) + 1))
                end = match.end() + (len(args) + 1 if args is not None else 0)
                match = SIBLING.match(TEXT, end)
                name = f"{parent}.{match['name']}" if match else name
    return found


MENTIONS = mentions()


def accepts(function: object, names: set[str]) -> set[str]:
    """The names among ``names`` that ``function`` does not take as keywords."""
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return set()
    return names - {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def test_the_readme_mentions_the_api_it_documents():
    names = {name for name, _, _ in MENTIONS}
    assert {"regframe.history.load", "regframe.plot.growth", "regframe.plot.storage"} <= names
    assert {"registry.storage_usage", "registry.reclaimable_bytes", "registry.plot_storage"} <= names


@pytest.mark.parametrize(("name", "args", "line"), MENTIONS, ids=[f"{n}@{line}" for n, _, line in MENTIONS])
def test_every_dotted_name_in_the_readme_exists(name, args, line):
    pytest.importorskip("matplotlib")
    import regframe.accessor

    def lookup() -> object:
        if name.startswith("registry."):
            return getattr(regframe.accessor.RegistryAccessor, name.split(".", 1)[1])
        return resolve(name)

    if name in RETIRED:
        with pytest.raises(AttributeError):
            lookup()
        assert name in API_CHANGES and TEXT.count(name) == API_CHANGES.count(name), (
            f"README line {line}: {name} is gone; only the API changes section may name it"
        )
        return
    try:
        value = lookup()
    except (AttributeError, ImportError) as err:
        pytest.fail(f"README line {line} mentions {name}, which does not exist: {err}")
    shown = keywords(args) if args is not None else None
    if shown and callable(value):
        unknown = accepts(value, shown)
        assert not unknown, f"README line {line}: {name}() takes no keyword {sorted(unknown)}"


FRESH = """
import sys
import regframe
assert "matplotlib" not in sys.modules, "import regframe loaded matplotlib"
assert {"plot", "history", "analysis"} <= set(dir(regframe)), dir(regframe)
assert callable(regframe.history.load)
assert callable(regframe.plot.growth) and callable(regframe.plot.storage)
assert callable(regframe.analysis.storage_usage)
import pandas
assert hasattr(pandas.DataFrame, "registry"), "df.registry is not registered"
try:
    regframe.no_such_part
except AttributeError as err:
    assert "no_such_part" in str(err)
else:
    raise AssertionError("regframe.no_such_part resolved")
print("ok")
"""


def test_readme_code_works_after_a_plain_import_regframe():
    """``regframe.history.load(DIR)`` and ``regframe.plot.growth(...)`` as the README writes them, in a fresh
    interpreter, while ``import regframe`` alone still loads no matplotlib."""
    done = subprocess.run([sys.executable, "-c", FRESH], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
