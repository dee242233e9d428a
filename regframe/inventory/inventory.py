"""``Inventory``: the frames of one crawl, with lossless CSV / Parquet export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .._format import human_bytes
from .frames import CATALOG_COLUMNS, ERROR_COLUMNS, LAYER_COLUMNS, MANIFEST_COLUMNS, TAG_COLUMNS, typed

FRAMES = {"catalog": CATALOG_COLUMNS, "tags": TAG_COLUMNS, "manifests": MANIFEST_COLUMNS,
          "layers": LAYER_COLUMNS, "errors": ERROR_COLUMNS}
NA = "<NA>"  # so that an empty namespace survives a CSV round trip as "", not as missing


class Inventory:
    """A registry as DataFrames: ``catalog``, ``tags``, ``manifests``, ``layers``, plus ``errors`` and ``stats``."""

    def __init__(self, catalog: pd.DataFrame, tags: pd.DataFrame, manifests: pd.DataFrame,
                 layers: pd.DataFrame, errors: pd.DataFrame, stats: dict | None = None,
                 url: str | None = None, complete: bool = True):
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
        return (f"Inventory({self.url or 'registry'}: {len(self.catalog)} repositories, {len(self.tags)} tags, "
                f"{len(self.manifests)} images, {len(self.layers)} layer rows, {len(self.errors)} errors"
                f"{'' if self.complete else ', incomplete'})")

    def _repr_html_(self) -> str:
        from html import escape
        distinct = self.layers.drop_duplicates("layer_digest")["size"].sum() if len(self.layers) else 0
        rows = [("registry", self.url or ""), ("repositories", len(self.catalog)), ("tags", len(self.tags)),
                ("images (per platform)", len(self.manifests)), ("layer rows", len(self.layers)),
                ("distinct layer bytes", human_bytes(int(distinct))), ("errors", len(self.errors)),
                ("requests", self.stats.get("total_requests", "")),
                ("seconds", self.stats.get("seconds", ""))]
        if not self.complete:
            rows.append(("status", "incomplete (stopped before the end)"))
        body = "".join(f"<tr><th style='text-align:left'>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                       for k, v in rows)
        return f"<div><b>regframe Inventory</b><table>{body}</table></div>"

    # -- export ---------------------------------------------------------------------------------------

    def _meta(self) -> dict:
        return {"url": self.url, "complete": self.complete, "stats": self.stats}

    def _export(self, dir: str | os.PathLike, write) -> Path:
        """Each frame with labels as JSON text, handed to ``write(frame, out, name)``; then the metadata."""
        out = Path(dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames().items():
            frame = frame.copy()
            if "labels" in frame:
                frame["labels"] = frame["labels"].map(lambda v: json.dumps(v, sort_keys=True))
            write(frame, out, name)
        _atomic_write(out / "inventory.json", json.dumps(self._meta(), indent=2, default=str).encode())
        return out

    def to_csv(self, dir: str | os.PathLike) -> Path:
        """One CSV per frame (labels as JSON) plus ``inventory.json``; ``Inventory.load`` reads them back."""
        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            if "created" in frame:
                frame["created"] = frame["created"].map(lambda t: t.isoformat() if pd.notna(t) else NA)
            _atomic_write(out / f"{name}.csv", frame.to_csv(index=False, na_rep=NA).encode())
        return self._export(dir, write)

    def to_parquet(self, dir: str | os.PathLike) -> Path:
        """One Parquet file per frame plus ``inventory.json``; types are kept as they are."""
        def write(frame: pd.DataFrame, out: Path, name: str) -> None:
            tmp = out / f".{name}.parquet.part"
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, out / f"{name}.parquet")
        return self._export(dir, write)

    @classmethod
    def load(cls, dir: str | os.PathLike) -> "Inventory":
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
            else:
                raise FileNotFoundError(f"{root} has neither {name}.parquet nor {name}.csv")
            if "labels" in frame:
                frame["labels"] = frame["labels"].map(lambda v: json.loads(v) if isinstance(v, str) else {})
            if "is_index" in frame and not pd.api.types.is_bool_dtype(frame["is_index"]):
                frame["is_index"] = frame["is_index"].map({"True": True, "False": False})
            for column in frame.columns:
                if column in ("tag_count", "layer_count", "size", "position") and \
                        not pd.api.types.is_numeric_dtype(frame[column]):
                    frame[column] = pd.to_numeric(frame[column])
            frames[name] = typed(frame[columns])
        return cls(**frames, stats=meta.get("stats"), url=meta.get("url"), complete=meta.get("complete", True))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
