"""``Inventory``: the frames of one crawl, with lossless CSV / Parquet export."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from ..client.arguments import check_flag
from ..client.atomic_files import write_atomically
from ..client.reference import DIGEST_GRAMMAR
from ..units import format_bytes
from .frames import (
    CATALOG_COLUMNS,
    ERROR_COLUMNS,
    INTEGER,
    LAYER_COLUMNS,
    MANIFEST_COLUMNS,
    REFERRER_COLUMNS,
    TAG_COLUMNS,
    typed,
)

FRAMES = {
    "catalog": CATALOG_COLUMNS,
    "tags": TAG_COLUMNS,
    "manifests": MANIFEST_COLUMNS,
    "layers": LAYER_COLUMNS,
    "referrers": REFERRER_COLUMNS,
    "errors": ERROR_COLUMNS,
}
# Saved before these existed: read back as an empty frame, or as missing values.
OPTIONAL_FRAMES = {"referrers"}
# inventory.json's layout. 1: url, complete, stats. 2 adds format, regframe_version, crawled_at and params.
FORMAT = 2
NA = "<NA>"  # so that an empty namespace survives a CSV round trip as "", not as missing
# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy for spreadsheets: every text cell starting with ``= + - @``, a tab or a carriage return gets a
    leading ``'`` (OWASP's advice), so a hostile label, platform or name cannot run as a formula.

    Text already starting with ``'`` gets one too, which makes ``restore_formulas`` exact; numbers,
    booleans and dates are left as they are (a negative size stays a number)."""
    out = frame.copy()
    for column in out.columns:
        if _is_text_column(out[column]):
            out[column] = out[column].astype(object).map(_quote)
    return out


def restore_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo ``neutralize_formulas``: drop the one leading ``'`` it added to text cells."""
    out = frame.copy()
    for column in out.columns:
        if _is_text_column(out[column]):
            out[column] = (
                out[column].astype(object).map(lambda v: v[1:] if isinstance(v, str) and v.startswith(QUOTE) else v)
            )
    return out


def _is_text_column(series: pd.Series) -> bool:
    dtype = series.dtype
    return not (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_bool_dtype(dtype)
        or pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
    )


def _quote(value):
    if isinstance(value, str) and value.startswith(FORMULA_START + (QUOTE,)):
        return QUOTE + value
    return value


class InventoryFormatError(ValueError):
    """A saved inventory this regframe cannot read: written in a newer format, or not an inventory at all."""


@functools.cache
def regframe_version() -> str:
    """The installed regframe's version, recorded in every saved inventory; looked up once, as it scans
    the installed packages."""
    try:
        return importlib.metadata.version("regframe")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def crawl_parameters(
    repositories: tuple[str, ...] | None, match: str | re.Pattern[str] | None, **options: Any
) -> dict[str, Any]:
    """What a crawl was asked for, as JSON values: which repositories (exact names, a pattern) and options
    that change what it reads. Saved with the inventory, so two snapshots can be told apart by scope."""
    pattern = match.pattern if isinstance(match, re.Pattern) else match
    return {"repositories": None if repositories is None else sorted(repositories), "match": pattern, **options}


class Inventory:
    """A registry as DataFrames: ``catalog``, ``tags``, ``manifests``, ``layers``, plus ``errors`` and ``stats``."""

    def __init__(
        self,
        catalog: pd.DataFrame,
        tags: pd.DataFrame,
        manifests: pd.DataFrame,
        layers: pd.DataFrame,
        errors: pd.DataFrame,
        stats: dict | None = None,
        url: str | None = None,
        complete: bool = True,
        params: dict[str, Any] | None = None,
        crawled_at: pd.Timestamp | str | None = None,
        referrers: pd.DataFrame | None = None,
    ):
        self.catalog = catalog
        self.tags = tags
        self.manifests = manifests
        self.layers = layers
        self.referrers = referrers if referrers is not None else typed(pd.DataFrame(columns=REFERRER_COLUMNS))
        self.errors = errors
        self.stats = dict(stats or {})
        self.url = url
        self.complete = complete
        self.params = dict(params or {})
        self.crawled_at = _utc(crawled_at)
        self.format = FORMAT
        self.regframe_version: str | None = regframe_version()

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in FRAMES}

    def repository_count(self) -> int:
        """Repositories holding at least one tag: distribution keeps a repository whose tags were all deleted
        in its catalog, and such a one counts as removed (as ``diff`` counts it)."""
        if "tag_count" not in self.catalog:
            return len(self.catalog)
        return int((self.catalog["tag_count"].fillna(0) > 0).sum())

    def image_count(self) -> int:
        """Manifest rows that are images (one per tag and platform): signatures, SBOMs, attestations and
        other artifacts, BuildKit's ``unknown/unknown`` attestation entries among them, do not count."""
        if "kind" not in self.manifests:
            return len(self.manifests)
        return int((self.manifests["kind"] == "image").sum())

    def __repr__(self) -> str:
        return (
            f"Inventory({self.url or 'registry'}: {self.repository_count()} repositories, {len(self.tags)} tags, "
            f"{self.image_count()} images, {len(self.referrers)} accessories, {len(self.layers)} blob rows, "
            f"{len(self.errors)} errors"
            f"{'' if self.complete else ', incomplete'})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        distinct = self.layers.drop_duplicates("layer_digest")["size"].sum() if len(self.layers) else 0
        rows = [
            ("registry", self.url or ""),
            ("repositories", self.repository_count()),
            ("tags", len(self.tags)),
            ("images (per platform)", self.image_count()),
            ("accessories", len(self.referrers)),
            ("blob rows", len(self.layers)),
            ("distinct blob bytes", format_bytes(int(distinct))),
            ("errors", len(self.errors)),
            ("requests", self.stats.get("total_requests", "")),
            ("seconds", self.stats.get("seconds", "")),
        ]
        if not self.complete:
            rows.append(("status", "incomplete (stopped early, or the catalog was not read to its end)"))
        body = "".join(
            f"<tr><th style='text-align:left'>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in rows
        )
        return f"<div><b>regframe Inventory</b><table>{body}</table></div>"

    # -- export ---------------------------------------------------------------------------------------

    def diff(self, older: Inventory, **options: Any) -> Any:
        """What changed from ``older`` to this inventory: a ``regframe.history.Diff``.

        The diff needs the analysis (storage, stale tags), which sits above the inventory, so it lives in
        ``regframe.history`` and is loaded on the first call. ``options`` go to ``regframe.history.diff``
        (the stale-tag rules ``older_than``, ``keep_last``, ``keep``, ``match``, or ``stale=``)."""
        history = importlib.import_module("regframe.history")
        return history.diff(older, self, **options)

    def _meta(self) -> dict:
        return {
            "format": FORMAT,
            "regframe_version": regframe_version(),
            "url": self.url,
            "complete": self.complete,
            "crawled_at": None if self.crawled_at is None else self.crawled_at.isoformat(),
            "params": self.params,
            "stats": self.stats,
        }

    def _export(self, dir: str | os.PathLike, write, files: str, **meta) -> Path:
        """Each frame with labels as JSON text, handed to ``write(frame, out, name)``; then the metadata, which
        names the ``files`` format written (``load`` reads that one only). A frame file of the other format,
        left by an earlier save into the folder, is removed: it would be taken for this inventory's.

        Every file is written through a new temporary file renamed into place, so a link planted at
        an output name is replaced, never written through."""
        out = Path(dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames().items():
            frame = frame.copy()
            if "labels" in frame:
                frame["labels"] = frame["labels"].map(lambda v: json.dumps(v, sort_keys=True))
            write(frame, out, name)
        other = next(suffix for suffix in FILE_FORMATS if suffix != files)
        for name in FRAMES:
            (out / f"{name}.{other}").unlink(missing_ok=True)
        text = json.dumps({**self._meta(), "files": files, **meta}, indent=2, default=str)
        write_atomically(out / "inventory.json", [text.encode()])
        return out

    def to_csv(self, dir: str | os.PathLike, *, spreadsheet_safe: bool = False) -> Path:
        """One CSV per frame (labels as JSON) plus ``inventory.json``; ``Inventory.load`` reads them back.

        The values are written as they are, for pandas and other programs. ``spreadsheet_safe=True`` (what
        ``regframe audit`` writes) prefixes text that a spreadsheet would run as a formula with ``'``
        (see ``neutralize_formulas``); ``Inventory.load`` removes the prefix again, other readers see it."""
        check_flag("spreadsheet_safe", spreadsheet_safe)

        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            frame = _escaped(frame)
            for column in ("created", "pushed"):
                if column in frame:
                    frame[column] = frame[column].map(lambda t: t.isoformat() if pd.notna(t) else NA)
            if spreadsheet_safe:
                frame = neutralize_formulas(frame)
            write_atomically(out / f"{name}.csv", [frame.to_csv(index=False, na_rep=NA).encode()])

        flags = {"spreadsheet_safe": True} if spreadsheet_safe else {}
        return self._export(dir, write, "csv", escaped=True, **flags)

    def to_parquet(self, dir: str | os.PathLike) -> Path:
        """One Parquet file per frame plus ``inventory.json``; types are kept as they are."""

        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            write_atomically(out / f"{name}.parquet", [buffer.getvalue()])

        return self._export(dir, write, "parquet")

    @classmethod
    def load(cls, dir: str | os.PathLike) -> Inventory:
        """Read what ``to_csv`` or ``to_parquet`` wrote: the files ``inventory.json`` names (an inventory saved
        before it named them: Parquet preferred when both are there).

        Every older format loads (format 1 has no ``params``, ``crawled_at`` or ``regframe_version``); a newer
        one raises ``InventoryFormatError`` saying which regframe wrote it, before any frame is read. So does
        a damaged one, naming the file and what is wrong: a file that cannot be parsed or is cut short, one
        without the columns every format has (``KEY_COLUMNS``), a row without a name or a digest, a value
        of the wrong type in ``inventory.json``. A file that is missing raises FileNotFoundError."""
        root = Path(dir)
        meta = read_meta(root)
        fmt = meta.get("format", 1)
        suffixes = (meta["files"],) if "files" in meta else FILE_FORMATS
        frames = {}
        for name, columns in FRAMES.items():
            found = next(
                (root / f"{name}.{suffix}" for suffix in suffixes if (root / f"{name}.{suffix}").is_file()), None
            )
            if found is not None:
                frames[name] = _frame(found, columns, meta)
            elif name in OPTIONAL_FRAMES:
                frames[name] = _shaped(pd.DataFrame(columns=columns), columns)
            else:
                raise FileNotFoundError(f"{root} has no {' or '.join(f'{name}.{suffix}' for suffix in suffixes)}")
        inv = cls(
            **frames,
            stats=meta.get("stats"),
            url=meta.get("url"),
            complete=meta.get("complete", True),
            params=meta.get("params"),
            crawled_at=meta.get("crawled_at"),
        )
        inv.format = fmt
        inv.regframe_version = meta.get("regframe_version")
        return inv


# Columns every saved format has, each with whether every row fills it: a file without them is not the
# frame its name says (a foreign file, a header cut off), and a row without a filled one was cut short.
KEY_COLUMNS: dict[str, dict[str, bool]] = {
    "catalog": {"repository": True},
    "tags": {"repository": True, "tag": True, "digest": True},
    "manifests": {"repository": True, "digest": True},
    "layers": {"repository": True, "layer_digest": True, "size": False},
    "referrers": {"repository": True, "subject": True, "digest": True},
    "errors": {"stage": True, "error": False},
}
# The file formats an inventory is saved in, the one ``load`` prefers first when ``inventory.json`` names none.
FILE_FORMATS = ("parquet", "csv")
DIGEST_COLUMNS = ("digest", "manifest_digest", "config_digest", "layer_digest", "subject")


def _frame(path: Path, columns: list[str], meta: dict[str, Any]) -> pd.DataFrame:
    """One saved frame with the types a crawl gives it; InventoryFormatError naming ``path`` when it is damaged."""
    import pyarrow as pa

    name = path.stem
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = _read_csv(path)
            if meta.get("spreadsheet_safe"):
                frame = restore_formulas(frame)
            if meta.get("escaped"):
                frame = _unescaped(frame)
            # As a crawl builds them: from Python objects, so a categorical without a value (an empty
            # frame, a column all missing) gets object categories, not str or float ones.
            frame = frame.astype(object)
        missing = [column for column in KEY_COLUMNS[name] if column not in frame]
        if missing:
            raise InventoryFormatError(
                f"{path} lacks the column(s) {', '.join(missing)}: it is not a saved {name} frame"
            )
        _check_rows(path, frame, name)
        return _shaped(frame, columns)
    except InventoryFormatError:
        raise
    except (ValueError, TypeError, KeyError, pa.ArrowException) as exc:
        raise InventoryFormatError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None


def _shaped(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A frame as read, with the columns and types a crawl gives it: a column an older format lacks is
    missing values, labels are parsed from their JSON text."""
    for column in columns:
        if column not in frame:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype=object)
    if "labels" in frame:
        frame["labels"] = frame["labels"].map(lambda v: json.loads(v) if isinstance(v, str) else {})
    if "is_index" in frame and not pd.api.types.is_bool_dtype(frame["is_index"]):
        frame["is_index"] = frame["is_index"].map({"True": True, "False": False})
    for column in frame.columns:
        if column in INTEGER and not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = pd.to_numeric(frame[column])
    return typed(frame[columns])


# A CSV writes a missing value as NA; a text that is NA itself, or starts with ESCAPE, is written with ESCAPE
# before it, so that it reads back as text (``escaped`` in inventory.json says a CSV was written so).
ESCAPE = "\\"


def _escaped(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object or isinstance(values.dtype, (pd.CategoricalDtype, pd.StringDtype)):
            out[column] = values.astype(object).map(
                lambda v: ESCAPE + v if isinstance(v, str) and (v == NA or v.startswith(ESCAPE)) else v
            )
    return out


def _unescaped(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        out[column] = out[column].map(lambda v: v[1:] if isinstance(v, str) and v.startswith(ESCAPE) else v)
    return out


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV as text cells; one that does not end with a line break was cut short (``to_csv`` ends every
    row with one), however well the rows before the cut parse."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            raise InventoryFormatError(f"{path} is empty: it is not a saved {path.stem} frame")
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) != b"\n":
            raise InventoryFormatError(f"{path} ends in the middle of a row: it was cut short")
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[NA])


def _check_rows(path: Path, frame: pd.DataFrame, name: str) -> None:
    """Refuse a frame with a row missing what every row has, or a digest that is none."""
    for column in (column for column, filled in KEY_COLUMNS[name].items() if filled):
        empty = frame[column].isna() | (frame[column].astype(object) == "")
        if empty.any():
            row = int(empty.to_numpy().nonzero()[0][0])
            raise InventoryFormatError(f"{path}: row {row + 1:,} has no {column} (the file is damaged)")
    for column in DIGEST_COLUMNS:
        if column not in frame:
            continue
        values = frame[column]
        distinct = values.cat.categories if isinstance(values.dtype, pd.CategoricalDtype) else values.dropna().unique()
        bad = next((v for v in distinct if not DIGEST_GRAMMAR.fullmatch(str(v))), None)
        if bad is not None:
            raise InventoryFormatError(f"{path}: {column} {bad!r} is not a digest (algorithm:hex; the file is damaged)")


def read_meta(dir: str | os.PathLike) -> dict[str, Any]:
    """A saved inventory's ``inventory.json`` ({} when there is none), its format checked: a newer format
    than this regframe reads raises ``InventoryFormatError`` naming the regframe that wrote it; one that is
    not JSON, or whose values have the wrong types, raises it naming the file."""
    path = Path(dir) / "inventory.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise InventoryFormatError(f"{path} is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InventoryFormatError(f"{path} is not a regframe inventory (it holds no JSON object)")
    _check_format(meta, path)
    _check_types(meta, path)
    return meta


# inventory.json's keys and the JSON types each may hold (None: null).
_META_TYPES: dict[str, tuple[type, ...]] = {
    "url": (str, type(None)),
    "complete": (bool,),
    "crawled_at": (str, type(None)),
    "params": (dict, type(None)),
    "stats": (dict, type(None)),
    "regframe_version": (str, type(None)),
    "spreadsheet_safe": (bool,),
    "files": (str,),
    "escaped": (bool,),
}
_JSON_NAMES = {str: "text", type(None): "null", bool: "true or false", dict: "an object"}


def _check_types(meta: dict, path: Path) -> None:
    for key, types in _META_TYPES.items():
        if key in meta and not isinstance(meta[key], types):
            wanted = " or ".join(_JSON_NAMES[t] for t in types)
            raise InventoryFormatError(f"{path}: {key} must be {wanted}, not {type(meta[key]).__name__}")
    if meta.get("files", FILE_FORMATS[0]) not in FILE_FORMATS:
        raise InventoryFormatError(f"{path}: files must be one of {', '.join(FILE_FORMATS)}, not {meta['files']!r}")
    stamp = meta.get("crawled_at")
    if stamp is not None:
        try:
            _utc(stamp)
        except ValueError as exc:
            raise InventoryFormatError(f"{path}: crawled_at {stamp!r} is not a date and time ({exc})") from None


def _check_format(meta: dict, path: Path) -> None:
    fmt = meta.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise InventoryFormatError(f"{path}: format {fmt!r} is not a regframe inventory format")
    if fmt > FORMAT:
        version = meta.get("regframe_version")
        writer = f"regframe {version}" if version else "a newer regframe"
        raise InventoryFormatError(
            f"{path.parent} was saved by {writer} in inventory format {fmt}; this regframe "
            f"({regframe_version()}) reads formats 1 to {FORMAT}: upgrade regframe to load it"
        )


def _utc(value: pd.Timestamp | str | None) -> pd.Timestamp | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
