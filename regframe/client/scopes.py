"""Token scopes: what each kind of request asks the registry's token service for."""

from __future__ import annotations


def pull_scope(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull",)


def push_scope(repository: str, *mount_from: str) -> tuple[str, ...]:
    return (f"repository:{repository}:pull,push",) + tuple(f"repository:{r}:pull" for r in mount_from)


def delete_scope(repository: str) -> tuple[str, ...]:
    return (f"repository:{repository}:delete,pull",)


CATALOG_SCOPE = ("registry:catalog:*",)
