"""Storage of Ray Train and Tune run data and checkpoints, and the copy of the results on cloud storage.

`output.storage_path` is a local folder (one node), a shared file system (`output.shared_storage`), or
cloud storage (`s3://`, `gs://`), which pyarrow opens. With `output.storage_endpoint`, an `s3://` path
goes to an S3-compatible server (MinIO, moto, Ceph) at that address instead of AWS. The sweep also
copies its result files to `<storage_path>/<job name>/`, so that they outlive the head node.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mlbench_ray.config import JobSpec, OutputSpec

logger = logging.getLogger(__name__)


class StorageError(ValueError):
    """A storage setting that cannot work on this cluster; the message names the setting and the fix."""


def is_remote(storage_path: str | None) -> bool:
    return storage_path is not None and "://" in storage_path


def ray_storage_path(output: OutputSpec) -> str | None:
    """Return the path to give Ray: without `s3://` when an explicit file system goes with it."""
    if output.storage_endpoint is None or output.storage_path is None:
        return output.storage_path
    return output.storage_path.removeprefix("s3://")


def storage_filesystem(output: OutputSpec) -> tuple[str | None, Any]:
    """Return Ray's `storage_path` and `storage_filesystem` for this output spec.

    Without an endpoint, Ray resolves the path itself and the file system is None. With an endpoint,
    the path loses its `s3://` and the file system is a pyarrow S3FileSystem for that server, carrying
    the credentials of this process's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) to
    every worker that unpickles it.
    """
    if output.storage_endpoint is None:
        return output.storage_path, None
    import pyarrow.fs

    endpoint = urlsplit(output.storage_endpoint)
    options: dict[str, Any] = {
        "endpoint_override": endpoint.netloc,
        "scheme": endpoint.scheme,
        "region": output.storage_region,
    }
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        options["access_key"] = os.environ["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = os.environ["AWS_SECRET_ACCESS_KEY"]
    return ray_storage_path(output), pyarrow.fs.S3FileSystem(**options)


def check_storage_for_cluster(job: JobSpec, node_count: int) -> None:
    """Reject a local storage path on a multi-node cluster, where other nodes cannot read it."""
    output = job.output
    if node_count <= 1 or is_remote(output.storage_path) or output.shared_storage:
        return
    where = (
        f"the local folder {output.storage_path}" if output.storage_path else "Ray's default ~/ray_results"
    )
    raise StorageError(
        f"output.storage_path: this cluster has {node_count} nodes, but run data and checkpoints would go to "
        f"{where}, which exists on one node only, so workers elsewhere could not save or restore "
        f"checkpoints. Pass --storage-path s3://BUCKET/PREFIX or gs://BUCKET/PREFIX, or a shared file "
        f"system mounted at the same path on every node together with output.shared_storage: true."
    )


def upload_results(
    output: OutputSpec, job_name: str, files: dict[str, str], filesystem: Any = None
) -> str | None:
    """Copy result files to `<storage_path>/<job_name>/` on cloud storage; return that location.

    Does nothing for local storage. A failed upload is logged, not raised: the local copy is kept.
    """
    if not is_remote(output.storage_path):
        return None
    import pyarrow.fs

    location = f"{str(output.storage_path).rstrip('/')}/{job_name}"
    try:
        if filesystem is None and output.storage_endpoint is not None:
            # The configured server, never AWS itself, even where the caller has no file system yet.
            filesystem = storage_filesystem(output)[1]
        if filesystem is None:
            filesystem, root = pyarrow.fs.FileSystem.from_uri(location)
        else:
            root = location.removeprefix("s3://")
        filesystem.create_dir(root, recursive=True)
        for name, text in files.items():
            with filesystem.open_output_stream(f"{root}/{name}") as stream:
                stream.write(text.encode("utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("could not copy the results to %s (the local copy is complete): %s", location, exc)
        return None
    return location
