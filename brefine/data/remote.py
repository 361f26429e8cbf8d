"""Datasets in S3: mirrored once per node into a local cache, then read locally.

A ``data_root`` of ``s3://bucket/prefix`` is downloaded to
``$BREFINE_S3_CACHE/bucket/prefix`` (default ``~/.cache/brefine/s3``) by every
process that trains or evaluates on it; the data loaders then read local files.

* parallel: objects download in a thread pool (boto3 clients are thread safe),
  large ones in parts through boto3's managed transfer;
* resumable: each object lands in a ``.part`` file renamed when complete, and
  a manifest of finished objects is flushed as the sync goes, so an
  interrupted sync re-fetches only what it had not finished;
* incremental: an object whose size and ETag match the local copy (by the
  manifest, or by the MD5 of the file for single-part uploads) is skipped;
* one sync per node: processes on one node take a file lock, the second one
  finds everything in place and skips it.

Credentials come only from boto3's standard chain (environment, profile,
instance role); an S3-compatible endpoint is set the standard way too
(``AWS_ENDPOINT_URL``). Nothing here logs or stores them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from brefine.configs import ConfigError

from .check import DatasetCheckError

CACHE_ENV = "BREFINE_S3_CACHE"
MANIFEST = ".brefine-s3-manifest.json"
FLUSH_EVERY = 200  # objects between manifest writes


def is_s3_uri(path: Any) -> bool:
    """Whether ``path`` is a string starting with ``s3://``."""
    return isinstance(path, str) and path.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b/``); the prefix is a folder.

    Raises:
        ConfigError: ``uri`` is not an ``s3://`` URI, names no bucket, or its
            prefix holds ``..``.
    """
    if not is_s3_uri(uri):
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"no bucket in {uri!r}; expected s3://bucket/prefix")
    parts = [part for part in prefix.split("/") if part not in ("", ".")]
    if ".." in parts:  # a prefix that climbs out of itself would mirror outside its folder
        raise ConfigError(f"{uri!r} holds '..'; give the prefix without it")
    return bucket, "/".join(parts) + "/" if parts else ""


def default_cache_dir() -> Path:
    """``$BREFINE_S3_CACHE``, else ``~/.cache/brefine/s3``: where S3 datasets are mirrored."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "brefine" / "s3"))


def local_mirror(uri: str, cache_dir: Optional[Path] = None) -> Path:
    """The local folder ``s3://bucket/prefix`` is mirrored to: ``<cache>/bucket/prefix``.

    Raises:
        ValueError: ``uri`` is not an ``s3://bucket/...`` URI.
    """
    bucket, prefix = split_s3_uri(uri)
    return (Path(cache_dir) if cache_dir else default_cache_dir()) / bucket / prefix


@dataclass
class SyncReport:
    """What one sync did: the local folder, objects fetched and skipped, bytes fetched."""

    local_dir: Path
    downloaded: int = 0
    skipped: int = 0
    bytes_downloaded: int = 0


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _up_to_date(path: Path, size: int, etag: str, recorded: Optional[dict]) -> bool:
    if not path.is_file() or path.stat().st_size != size:
        return False
    if recorded is not None:
        return recorded.get("etag") == etag and recorded.get("size") == size
    # A single-part upload's ETag is the MD5 of the object; a multipart one's
    # ("...-N") depends on the part size, so without a record it is fetched again.
    return "-" not in etag and _md5(path) == etag


def _write_manifest(path: Path, entries: dict) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, indent=0, sort_keys=True))
    os.replace(tmp, path)


def mirror_path(local: Path, key: str, prefix: str) -> Path:
    """Where object ``key`` lands under ``local``; refuses keys that would leave it.

    Anyone who can write keys into the bucket chooses these names, so a key
    whose part below the prefix is absolute, has ``..``, ``.`` or empty
    segments, or a backslash or NUL, is refused: nothing is written outside
    the mirror folder.

    Raises:
        DatasetCheckError: naming a key that is not a plain relative path
            below the prefix, or that resolves outside ``local``.
    """
    rel = key[len(prefix):]
    parts = rel.split("/")
    if not rel or any(part in ("", ".", "..") for part in parts) or "\\" in rel or "\0" in rel:
        raise DatasetCheckError(f"refusing S3 key {key!r}: below the prefix {prefix!r} it is not "
                                "a plain relative path (absolute, '..', '.' or empty segments), "
                                "so mirroring it could write outside the cache folder; rename "
                                "or delete that object")
    target = local.joinpath(*parts)
    if not target.resolve().is_relative_to(local.resolve()):
        raise DatasetCheckError(f"refusing S3 key {key!r}: it resolves outside the mirror "
                                f"folder {local} (a symbolic link there?)")
    return target


def _list_objects(client, bucket: str, prefix: str) -> list[dict]:
    objects = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(o for o in page.get("Contents", []) if not o["Key"].endswith("/"))
    return objects


def _list_or_refuse(client, uri: str, bucket: str, prefix: str) -> list[dict]:
    """The objects under the prefix; DatasetCheckError when unlistable or empty."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        objects = _list_objects(client, bucket, prefix)
    except (BotoCoreError, ClientError) as err:
        raise DatasetCheckError(f"cannot list the dataset at {uri}: {err}. Check the "
                                "bucket name and that the AWS credentials of this node "
                                "may read it (s3:ListBucket, s3:GetObject)") from None
    if not objects:
        raise DatasetCheckError(f"no objects under {uri}: is the prefix right?")
    return objects


def _plan(objects: list[dict], local: Path, prefix: str, manifest: dict,
          report: SyncReport) -> list[tuple[str, str, str, int]]:
    """(rel, key, etag, size) of the objects to fetch; records the up-to-date ones as skipped."""
    pending = []
    for obj in objects:  # every key is checked before anything is written
        target = mirror_path(local, obj["Key"], prefix)
        rel = target.relative_to(local).as_posix()
        etag = obj["ETag"].strip('"')
        if _up_to_date(target, obj["Size"], etag, manifest.get(rel)):
            manifest[rel] = dict(etag=etag, size=obj["Size"])
            report.skipped += 1
        else:
            pending.append((rel, obj["Key"], etag, obj["Size"]))
    return pending


def _fetch_object(client, bucket: str, key: str, target: Path) -> None:
    """Download ``key`` into a ``.part`` file beside ``target``, renamed when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    client.download_file(bucket, key, str(part))
    os.replace(part, target)


def _download(client, bucket: str, prefix: str, local: Path,
              pending: list[tuple[str, str, str, int]], manifest: dict, manifest_path: Path,
              max_workers: int, report: SyncReport) -> None:
    """Fetch ``pending`` in parallel, recording each in the manifest, flushed as it goes."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            futures = {pool.submit(_fetch_object, client, bucket, key, local / rel):
                       (rel, etag, size) for rel, key, etag, size in pending}
            for done, future in enumerate(as_completed(futures), 1):
                rel, etag, size = futures[future]
                try:
                    future.result()
                except (BotoCoreError, ClientError, OSError) as err:
                    raise DatasetCheckError(
                        f"cannot download s3://{bucket}/{prefix}{rel}: {err}") from None
                manifest[rel] = dict(etag=etag, size=size)
                report.downloaded += 1
                report.bytes_downloaded += size
                if done % FLUSH_EVERY == 0:
                    _write_manifest(manifest_path, manifest)
    finally:
        _write_manifest(manifest_path, manifest)


def sync_s3_prefix(uri: str, cache_dir: Optional[Path] = None, max_workers: int = 16,
                   client: Any = None) -> SyncReport:
    """Mirror ``s3://bucket/prefix`` into the local cache; returns what it did.

    Raises:
        ValueError: ``uri`` is not an ``s3://bucket/...`` URI.
        DatasetCheckError: the URI cannot be listed or holds no objects, an
            object cannot be downloaded, or a key would land outside the mirror.
    """
    import boto3

    bucket, prefix = split_s3_uri(uri)
    local = local_mirror(uri, cache_dir)
    local.mkdir(parents=True, exist_ok=True)
    client = client or boto3.client("s3")
    report = SyncReport(local_dir=local)
    with open(local / ".brefine-s3.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        objects = _list_or_refuse(client, uri, bucket, prefix)
        manifest_path = local / MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        pending = _plan(objects, local, prefix, manifest, report)
        _download(client, bucket, prefix, local, pending, manifest, manifest_path,
                  max_workers, report)
    return report


def localize_data_root(data_root: Optional[str]) -> Optional[str]:
    """A local directory for ``data_root``: S3 URIs are synced first, paths pass through.

    Raises:
        DatasetCheckError: an ``s3://`` root cannot be listed, is empty or
            cannot be downloaded.
    """
    if not is_s3_uri(data_root):
        return data_root
    report = sync_s3_prefix(data_root)
    print(f"dataset {data_root}: {report.downloaded} object(s) downloaded "
          f"({report.bytes_downloaded / 2**20:.1f} MiB), {report.skipped} already cached "
          f"in {report.local_dir}", flush=True)
    return str(report.local_dir)
