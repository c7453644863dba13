"""Stores at fsspec URLs (``s3://bucket/prefix``, ``gs://``, ``memory://``): opening, listing, errors.

Credentials and the endpoint come from the standard variables of each protocol (for S3:
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), and
anything else from fsspec's own configuration (``FSSPEC_S3_<OPTION>`` variables or its config
file): probe has no setting of its own. For S3, connections time out after
:data:`S3_CONNECT_TIMEOUT` seconds and a request is tried :data:`S3_MAX_ATTEMPTS` times unless
``AWS_MAX_ATTEMPTS`` says otherwise, so a wrong endpoint is a prompt error, not a hang.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from probe.errors import StoreError

if TYPE_CHECKING:
    import zarr

S3_CONNECT_TIMEOUT = 5
S3_MAX_ATTEMPTS = 3


def is_url(path: str) -> bool:
    """Whether ``path`` is an fsspec URL rather than a local path."""
    return "://" in str(path)


def storage_options(path: str) -> dict[str, Any] | None:
    """fsspec options probe adds for ``path`` (bounded connect time and retries on S3), else None."""
    if not str(path).startswith(("s3://", "s3a://")):
        return None
    attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", S3_MAX_ATTEMPTS))
    return {
        "config_kwargs": {
            "connect_timeout": S3_CONNECT_TIMEOUT,
            "retries": {"max_attempts": attempts, "mode": "standard"},
        }
    }


def open_group(path: str, *, mode: Any, **kwargs: Any) -> zarr.Group:
    """``zarr.open_group`` with probe's storage options for URLs."""
    import zarr

    if is_url(path):
        kwargs["storage_options"] = storage_options(path)
    return zarr.open_group(path, mode=mode, **kwargs)


def url_fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a URL."""
    import fsspec

    return fsspec.core.url_to_fs(url, **(storage_options(url) or {}))


def check_url(url: str, *, owner: str = "ExtractConfig(store_root") -> None:
    """Reach the bucket (or top folder) of ``url`` once, turning transport failures into one-line errors.

    Args:
        url: a store root or store URL.
        owner: how the message names the setting, e.g. ``"ExtractConfig(store_root"``.

    Raises:
        StoreError: the bucket does not exist, the credentials are refused, or the endpoint cannot be reached.
    """
    fs, root = url_fs(url)
    bucket = root.strip("/").split("/")[0]
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "the default endpoint") if url.startswith("s3") else "its endpoint"
    setting = f"{owner}={url})"
    try:
        fs.ls(bucket, refresh=True)
    except FileNotFoundError:
        raise StoreError(
            f"bucket {bucket!r} of {setting} does not exist at {endpoint}; create it first or fix the URL"
        ) from None
    except PermissionError as exc:
        raise StoreError(
            f"{endpoint} refused the credentials for {setting} ({first_line(exc)}); check AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        ) from None
    except Exception as exc:  # connection errors come from botocore/aiohttp, not OSError
        raise StoreError(
            f"cannot reach {endpoint} for {setting} ({first_line(exc)}); check AWS_ENDPOINT_URL and the network"
        ) from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), at most 200 characters."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def url_store_metas(root: str) -> list[str]:
    """URLs of every ``<root>/<dataset>/<store>.zarr`` group under a URL root, sorted."""
    fs, base = url_fs(root)
    protocol = root.split("://", 1)[0]
    found = fs.glob(f"{base.rstrip('/')}/*/*.zarr/zarr.json")
    return sorted(f"{protocol}://{p.rsplit('/zarr.json', 1)[0].lstrip('/')}" for p in found)


def url_prefix_is_empty(url: str) -> bool:
    """Whether nothing is stored under ``url``."""
    fs, root = url_fs(url)
    return not fs.exists(root) or not fs.ls(root)
