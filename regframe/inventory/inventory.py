"""``Inventory``: the frames of one crawl, with lossless CSV / Parquet export."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pandas as pd

from ..client.atomic_files import write_atomically
from ..units import format_bytes
from .frames import CATALOG_COLUMNS, ERROR_COLUMNS, LAYER_COLUMNS, MANIFEST_COLUMNS, TAG_COLUMNS, typed

FRAMES = {
    "catalog": CATALOG_COLUMNS,
    "tags": TAG_COLUMNS,
    "manifests": MANIFEST_COLUMNS,
    "layers": LAYER_COLUMNS,
    "errors": ERROR_COLUMNS,
}
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
    ):
        self.catalog = catalog
        self.tags = tags
        self.manifests = manifests
        self.layers = layers
        self.errors = errors
        self.stats = dict(stats or {})
        self.url = url
        self.complete = complete

    def frames(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in FRAMES}

    def __repr__(self) -> str:
        return (
            f"Inventory({self.url or 'registry'}: {len(self.catalog)} repositories, {len(self.tags)} tags, "
            f"{len(self.manifests)} images, {len(self.layers)} layer rows, {len(self.errors)} errors"
            f"{'' if self.complete else ', incomplete'})"
        )

    def _repr_html_(self) -> str:
        from html import escape

        distinct = self.layers.drop_duplicates("layer_digest")["size"].sum() if len(self.layers) else 0
        rows = [
            ("registry", self.url or ""),
            ("repositories", len(self.catalog)),
            ("tags", len(self.tags)),
            ("images (per platform)", len(self.manifests)),
            ("layer rows", len(self.layers)),
            ("distinct layer bytes", format_bytes(int(distinct))),
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

    def _meta(self) -> dict:
        return {"url": self.url, "complete": self.complete, "stats": self.stats}

    def _export(self, dir: str | os.PathLike, write, **meta) -> Path:
        """Each frame with labels as JSON text, handed to ``write(frame, out, name)``; then the metadata.

        Every file is written through a new temporary file renamed into place, so a link planted at
        an output name is replaced, never written through."""
        out = Path(dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames().items():
            frame = frame.copy()
            if "labels" in frame:
                frame["labels"] = frame["labels"].map(lambda v: json.dumps(v, sort_keys=True))
            write(frame, out, name)
        text = json.dumps({**self._meta(), **meta}, indent=2, default=str)
        write_atomically(out / "inventory.json", [text.encode()])
        return out

    def to_csv(self, dir: str | os.PathLike, *, spreadsheet_safe: bool = False) -> Path:
        """One CSV per frame (labels as JSON) plus ``inventory.json``; ``Inventory.load`` reads them back.

        The values are written as they are, for pandas and other programs. ``spreadsheet_safe=True`` (what
        ``regframe audit`` writes) prefixes text that a spreadsheet would run as a formula with ``'``
        (see ``neutralize_formulas``); ``Inventory.load`` removes the prefix again, other readers see it."""
        if not isinstance(spreadsheet_safe, bool):
            raise ValueError(f"spreadsheet_safe must be True or False, not {spreadsheet_safe!r}")

        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            if "created" in frame:
                frame["created"] = frame["created"].map(lambda t: t.isoformat() if pd.notna(t) else NA)
            if spreadsheet_safe:
                frame = neutralize_formulas(frame)
            write_atomically(out / f"{name}.csv", [frame.to_csv(index=False, na_rep=NA).encode()])

        return self._export(dir, write, **({"spreadsheet_safe": True} if spreadsheet_safe else {}))

    def to_parquet(self, dir: str | os.PathLike) -> Path:
        """One Parquet file per frame plus ``inventory.json``; types are kept as they are."""

        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            write_atomically(out / f"{name}.parquet", [buffer.getvalue()])

        return self._export(dir, write)

    @classmethod
    def load(cls, dir: str | os.PathLike) -> Inventory:
        """Read what ``to_csv`` or ``to_parquet`` wrote (Parquet preferred when both are there)."""
        root = Path(dir)
        meta_path = root / "inventory.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        frames = {}
        for name, columns in FRAMES.items():
            parquet, csv = root / f"{name}.parquet", root / f"{name}.csv"
            if parquet.is_file():
                frame = pd.read_parquet(parquet)
            elif csv.is_file():
                frame = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[NA])
                if meta.get("spreadsheet_safe"):
                    frame = restore_formulas(frame)
            else:
                raise FileNotFoundError(f"{root} has neither {name}.parquet nor {name}.csv")
            if "labels" in frame:
                frame["labels"] = frame["labels"].map(lambda v: json.loads(v) if isinstance(v, str) else {})
            if "is_index" in frame and not pd.api.types.is_bool_dtype(frame["is_index"]):
                frame["is_index"] = frame["is_index"].map({"True": True, "False": False})
            for column in frame.columns:
                if column in ("tag_count", "layer_count", "size", "position") and not pd.api.types.is_numeric_dtype(
                    frame[column]
                ):
                    frame[column] = pd.to_numeric(frame[column])
            frames[name] = typed(frame[columns])
        return cls(**frames, stats=meta.get("stats"), url=meta.get("url"), complete=meta.get("complete", True))
