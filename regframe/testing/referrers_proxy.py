"""A front for a real registry that serves the OCI 1.1 referrers API, which distribution 2.8 lacks.

Distribution 2.8 answers ``GET /v2/<name>/referrers/<digest>`` with a plain-text 404, so a client's API
path can only be tested against something that serves it. This proxy answers it from the registry's own
content, as a registry that turned the API on would: every manifest it can find in the repository (the
tagged ones and their index children, the entries of fallback indexes, every manifest PUT through the
proxy, and, given ``storage=``, every manifest revision in the registry's storage directory) whose
``subject`` is the digest asked for::

    with ReferrersProxy(registry.url, page_size=2) as proxy:
        client = regframe.connect(proxy.url)
        client.referrers("app", digest)          # served here, two per page with Link headers
        proxy.pages_served

``filters=False`` ignores ``?artifactType=`` and sends no ``OCI-Filters-Applied`` (filtering is a SHOULD);
``subject_header=False`` leaves ``OCI-Subject`` out of manifest PUT answers; ``content_type`` changes the
answer's type (a 200 that is not an index means "no API" to clients). Everything else goes to the registry
unchanged, and fault rules (``add_rule``) still come first.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from regframe.client import mediatypes as mt
from regframe.client.errors import InvalidReferenceError
from regframe.client.reference import sha256_digest, validate_digest

from .faultproxy import Action, Exchange, FaultProxy, UpstreamError

__all__ = ["ReferrersProxy"]

_REFERRERS = re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")
_MANIFEST = re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")
_ACCEPT = ", ".join([mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_LIST, mt.DOCKER_MANIFEST])
_MAX_LISTING_PAGES = 1000

Fetch = Callable[[str], tuple[int, dict[str, str], bytes]]


class ReferrersProxy(FaultProxy):
    """A ``FaultProxy`` that serves the referrers API in front of ``upstream_url`` (see the module docstring)."""

    def __init__(
        self,
        upstream_url: str,
        *,
        page_size: int = 100,
        filters: bool = True,
        subject_header: bool = True,
        content_type: str = mt.OCI_INDEX,
        storage: str | os.PathLike[str] | None = None,
        ca_path: str | os.PathLike[str] | None = None,
        seed: int = 0,
        timeout: float = 60.0,
    ):
        if not isinstance(page_size, int) or isinstance(page_size, bool) or page_size < 1:
            raise ValueError(f"page_size must be a positive integer, not {page_size!r}")
        super().__init__(upstream_url, ca_path=ca_path, seed=seed, timeout=timeout)
        self.page_size = page_size
        self.filters = filters
        self.subject_header = subject_header
        self.content_type = content_type
        self.storage = Path(storage) if storage is not None else None
        self._pushed: dict[str, dict[str, None]] = {}
        self._served = 0
        self._served_lock = threading.Lock()

    @property
    def pages_served(self) -> int:
        """Referrers answers (pages) this proxy has sent."""
        with self._served_lock:
            return self._served

    def _default_action(self) -> Action:
        return _ReferrersAPI(self)

    # -- the referrers API -----------------------------------------------------------------

    def serve_referrers(self, ex: Exchange, name: str, digest: str) -> None:
        try:
            validate_digest(digest)
        except InvalidReferenceError as exc:
            return ex.error(400, "DIGEST_INVALID", str(exc))
        params = ex.params
        wanted = params.get("artifactType", [None])[-1]
        last = params.get("last", [""])[-1]
        try:
            n = int(params["n"][-1]) if "n" in params else self.page_size
            if n < 1:
                raise ValueError
        except ValueError:
            return ex.error(400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested")
        found = self._referrers_of(self._reader(ex), name, digest)
        headers = {"Content-Type": self.content_type}
        if self.filters and wanted:
            found = [entry for entry in found if entry.get("artifactType") == wanted]
            headers["OCI-Filters-Applied"] = "artifactType"
        remaining = [entry for entry in found if entry["digest"] > last]
        page = remaining[:n]
        if len(remaining) > n:
            query = {"n": str(n), "last": page[-1]["digest"], **({"artifactType": wanted} if wanted else {})}
            headers["Link"] = f'<{ex.path}?{urlencode(query)}>; rel="next"'
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": page}
        with self._served_lock:
            self._served += 1
        ex.reply(200, json.dumps(body).encode(), headers)

    def _referrers_of(self, fetch: Fetch, name: str, digest: str) -> list[dict[str, Any]]:
        """Descriptors of the repository's manifests whose ``subject`` is ``digest``, sorted by digest."""
        manifests: dict[str, tuple[dict[str, Any], int, str]] = {}
        pending: dict[str, None] = {}

        def load(reference: str) -> None:
            status, headers, raw = fetch(f"/v2/{name}/manifests/{reference}")
            if status != 200:
                return
            document = json.loads(raw)
            found = headers.get("docker-content-digest") or sha256_digest(raw)
            media_type = document.get("mediaType") or headers.get("content-type", "").split(";")[0]
            manifests[found] = (document, len(raw), media_type)
            for child in document.get("manifests") or ():
                if isinstance(child, dict) and isinstance(child.get("digest"), str):
                    pending.setdefault(child["digest"])

        for tag in self._tags(fetch, name):
            load(quote(tag, safe=""))
        with self._lock:
            pending.update(self._pushed.get(name, {}))
        pending.update(dict.fromkeys(self._stored(name)))
        while pending:
            candidate = next(iter(pending))
            del pending[candidate]
            if candidate not in manifests:
                load(candidate)
        referrers = []
        for found, (document, size, media_type) in manifests.items():
            subject = document.get("subject")
            if not isinstance(subject, dict) or subject.get("digest") != digest:
                continue
            entry: dict[str, Any] = {"mediaType": media_type, "digest": found, "size": size}
            artifact_type = document.get("artifactType")
            config = document.get("config")
            if not artifact_type and isinstance(config, dict) and "manifests" not in document:
                artifact_type = config.get("mediaType")
            if artifact_type:
                entry["artifactType"] = artifact_type
            if document.get("annotations"):
                entry["annotations"] = document["annotations"]
            referrers.append(entry)
        return sorted(referrers, key=lambda entry: entry["digest"])

    def _tags(self, fetch: Fetch, name: str) -> list[str]:
        tags: list[str] = []
        path: str | None = f"/v2/{name}/tags/list"
        for _ in range(_MAX_LISTING_PAGES):
            if path is None:
                break
            status, headers, raw = fetch(path)
            if status != 200:
                break
            tags += json.loads(raw).get("tags") or []
            link = re.match(r"\s*<([^>]+)>", headers.get("link", ""))
            path = link.group(1) if link else None
        return tags

    def _stored(self, name: str) -> list[str]:
        """Every manifest revision of ``name`` in the registry's storage (untagged ones included)."""
        if self.storage is None:
            return []
        revisions = self.storage / "docker/registry/v2/repositories" / name / "_manifests/revisions"
        if not revisions.is_dir():
            return []
        return sorted(f"{alg.name}:{entry.name}" for alg in revisions.iterdir() for entry in alg.iterdir())

    # -- manifest PUTs ---------------------------------------------------------------------

    def relay_put(self, ex: Exchange, name: str) -> None:
        """Forward a manifest PUT; remember what was stored and, for a manifest with ``subject``, answer
        ``OCI-Subject`` as a registry with the API must."""
        response = ex.forward()
        digest = response.get("Docker-Content-Digest")
        if response.status == 201 and digest:
            with self._lock:
                self._pushed.setdefault(name, {})[digest] = None
            if self.subject_header:
                status, _, raw = self._reader(ex)(f"/v2/{name}/manifests/{digest}")
                subject = json.loads(raw).get("subject") if status == 200 else None
                if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
                    response.set("OCI-Subject", subject["digest"])
        ex.respond(response)

    def _reader(self, ex: Exchange) -> Fetch:
        """GET from the registry with the client's credentials and every manifest type accepted."""
        headers = {"Accept": _ACCEPT}
        authorization = ex.headers.get("Authorization")
        if authorization:
            headers["Authorization"] = authorization
        upstream = self._upstream
        if upstream is None:
            raise RuntimeError("ReferrersProxy needs an upstream registry")

        def fetch(path: str) -> tuple[int, dict[str, str], bytes]:
            conn = upstream.connect(self.timeout, lambda: self._count("upstream_connections"))
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, body
            except (OSError, http.client.HTTPException) as exc:
                raise UpstreamError(f"GET {path}: upstream failed: {exc}") from exc
            finally:
                conn.close()

        return fetch


class _ReferrersAPI(Action):
    """The proxy's default action: the referrers API and manifest PUTs here, everything else forwarded."""

    def __init__(self, proxy: ReferrersProxy):
        self.proxy = proxy

    def apply(self, ex: Exchange) -> None:
        referrers = _REFERRERS.match(ex.path)
        if ex.method == "GET" and referrers is not None:
            return self.proxy.serve_referrers(ex, referrers["name"], referrers["digest"])
        manifest = _MANIFEST.match(ex.path)
        if ex.method == "PUT" and manifest is not None:
            return self.proxy.relay_put(ex, manifest["name"])
        ex.respond(ex.forward())
