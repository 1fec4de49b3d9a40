"""Segmenting a whole collection on a Dask cluster (``dask.distributed``).

One task per file; each worker process loads the model once
(:func:`~msaf_learned_ssm.inference.shared_analyzer`) and gives torch, BLAS and OpenMP its share
of the host's cores (cores / (worker processes on the host x task threads per worker)), so
that workers do not oversubscribe the CPU.  Outputs are written atomically by the worker
(:mod:`msaf_learned_ssm.result_files`).  The client keeps a manifest (``.learned_ssm_manifest.jsonl``
in the output folder, one JSON line per finished file: output, input path, size and
modification time, model name and hash, settings); a rerun skips outputs the manifest says
were made from the same input, unchanged, with the same model file and settings, so an
interrupted run resumes.  An output made from an earlier version of the same input is
redone; one made from another input (another file of the same name) is refused without
``overwrite``, never reported as this input's.  A file that fails is reported and the run
goes on.

Pointing it at a real cluster is one change: ``Client("tcp://scheduler:8786")`` instead of a
``LocalCluster`` (or ``msaf-learned-ssm segment ... --scheduler tcp://scheduler:8786``).
Workers must see the input files, the output folder and the model file at the same paths.
Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from msaf_learned_ssm_jams.fileio import PathLike

from .config import PeakConfig
from .output_plan import plan_outputs

__all__ = ["CollectionReport", "segment_collection", "MANIFEST_NAME"]

#: File in the output folder listing the finished outputs (JSON lines).
MANIFEST_NAME = ".learned_ssm_manifest.jsonl"


@dataclass
class CollectionReport:
    """What :func:`segment_collection` did: paths done, skipped (already done with the same
    model and settings), and failed (path -> one-line reason)."""

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: dict = field(default_factory=dict)


def model_peaks(model: Optional[str]) -> PeakConfig:
    """The peak settings a model file carries (the author's defaults if it has none),
    read without building the model."""
    from .checkpoint import read_checkpoint
    from .model_files import resolve_model

    meta = read_checkpoint(resolve_model(model))
    return PeakConfig(**meta["peaks"]) if isinstance(meta.get("peaks"), dict) else PeakConfig()


def model_sync(model: Optional[str]) -> str:
    """The sync mode a model file carries (``"frame"`` if it has none)."""
    from .checkpoint import read_checkpoint
    from .model_files import resolve_model
    from .sync import check_sync

    return check_sync(read_checkpoint(resolve_model(model)).get("sync", "frame"))


def _model_settings(model: Optional[str], peaks: Optional[PeakConfig],
                    sync: Optional[str] = None) -> dict:
    """Model name, file hash, and the peak and sync settings that will be used (without
    loading it)."""
    from .model_files import file_sha256, model_name, resolve_model
    from .sync import check_sync

    path = resolve_model(model)
    return {"model": str(path), "name": model_name(path), "sha256": file_sha256(path),
            "peaks": (peaks or model_peaks(model)).to_dict(),
            "sync": check_sync(sync) if sync is not None else model_sync(model)}


def _input_stat(path: str) -> Optional[dict]:
    """The manifest's record of an input: absolute path, size and modification time (None
    if the file cannot be read: its task then fails with the reason)."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"input": os.path.abspath(path), "input_size": st.st_size,
            "input_mtime_ns": st.st_mtime_ns}


def _plan_task(path: str, data: Path, entry: Optional[dict], key: dict,
               overwrite: bool) -> tuple[str, Any]:
    """What to do with one input: ``("skip", None)``, ``("run", overwrite for this
    task)`` or ``("refuse", reason)``, from the manifest's entry of its output."""
    current = _input_stat(path)
    same_settings = entry is not None and {k: entry.get(k) for k in key} == key
    same_input = entry is not None and current is not None \
        and all(entry.get(k) == v for k, v in current.items())
    if data.exists() and same_settings and same_input:
        return "skip", None
    # The output of an earlier version of this very input is stale: it is redone.
    own = entry is not None and current is not None and data.exists() \
        and entry.get("input") == current["input"]
    if data.suffix == ".csv" and data.exists() and not (overwrite or own):
        made = (f"made from {entry.get('input')}" if entry is not None
                and entry.get("input") != (current or {}).get("input") else
                "made with other settings" if entry is not None else "not made by this run")
        return "refuse", f"{data} exists ({made}): pass overwrite to replace it"
    return "run", overwrite or own


def _read_manifest(path: Path) -> dict:
    done = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                done[entry["output"]] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill: that file is simply redone
    return done


def _worker_threads(hosts: dict) -> int:
    """This worker's share of its host's cores."""
    from distributed import get_worker

    from .parallel import worker_threads

    worker = get_worker()
    host = worker.address.rsplit(":", 1)[0]
    slots = max(1, hosts.get(host, 1)) * max(1, worker.state.nthreads)
    return worker_threads(slots)


def _segment_task(path: str, data: str, settings: dict, device: str, labels: bool,
                  overwrite: bool, hosts: dict) -> tuple[str, str, str]:
    """Run on a worker: segment one file and write its output; (path, status, reason)."""
    import torch
    from threadpoolctl import threadpool_limits

    from .errors import LearnedSSMError
    from .inference import shared_analyzer
    from .output_plan import OutputPlan
    from .result_files import write_results

    threads = _worker_threads(hosts)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            analyzer = shared_analyzer(settings["model"], device, settings["beats"])
            peaks = PeakConfig(**settings["peaks"])
            result = analyzer.analyze(path, peaks=peaks, sync=settings["sync"], labels=labels)
            write_results(OutputPlan(Path(data), None), result, analyzer.identity, peaks,
                          labels, None, overwrite, audio=path)
        return path, "done", ""
    except (LearnedSSMError, OSError) as exc:
        return path, "failed", str(exc) if path in str(exc) else f"{path}: {exc}"


def segment_collection(paths: Sequence[PathLike], out_dir: PathLike, *, client: Any = None,
                       model: Optional[str] = "default", fmt: str = "jams",
                       peaks: Optional[PeakConfig] = None, sync: Optional[str] = None,
                       labels: bool = True, device: str = "auto", overwrite: bool = False,
                       progress: bool = True, beats: Optional[str] = None) -> CollectionReport:
    """Segment many files on a Dask cluster, one task per file, writing ``out_dir/<stem>.<fmt>``.

    Parameters
    ----------
    paths : sequence of path-like
        Audio files (visible to the workers at these paths).
    out_dir : path-like
        Output folder (made if needed).
    client : distributed.Client, optional
        The cluster to use; default a ``LocalCluster`` of one single-threaded worker per
        core, closed at the end.
    model : str, optional
        A shipped model's name or a model file.
    fmt : {"jams", "csv"}
    peaks : PeakConfig, optional
        Peak picking; default the model file's own.
    sync : {"frame", "beat", "bar"}, optional
        Boundary placement (see :class:`~msaf_learned_ssm.inference.Analyzer`); default
        the model file's own.
    labels : bool
    device : str
        Device on the workers (``"auto"``: CUDA when the worker has it).
    overwrite : bool
        Replace existing CSV outputs made with other settings or from another input, and
        JAMS of another audio (a JAMS of the same audio is updated, never replaced).
    progress : bool
        A tqdm bar as files finish.
    beats : {"auto", "package", "madmom"}, optional
        Beat tracker (see :class:`~msaf_learned_ssm.inference.Analyzer`'s ``beat_model``;
        None: "auto", resolved on each worker: madmom where it is installed there).

    Returns
    -------
    CollectionReport

    Raises
    ------
    OutputError
        Two inputs would write the same output (checked before any task is sent).
    CheckpointError
        The model file is missing or unusable.
    ConfigError
        ``beats`` is not a beat tracker's name.
    """
    from distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    from .madmom_beats import check_beat_backend

    beats = check_beat_backend(beats)  # resolved on each worker: madmom where installed
    paths = [str(p) for p in paths]
    out_dir = Path(out_dir)
    plans = plan_outputs(paths, str(out_dir), fmt, None, overwrite=True)
    settings = _model_settings(model, peaks, sync) | {"beats": beats}
    manifest = out_dir / MANIFEST_NAME
    finished = _read_manifest(manifest)
    key = {k: settings[k] for k in ("sha256", "peaks", "sync", "beats")} | {"labels": labels}
    report, todo = CollectionReport(), []
    for path, plan in zip(paths, plans):
        action, detail = _plan_task(path, plan.data, finished.get(str(plan.data)), key,
                                    overwrite)
        if action == "skip":
            report.skipped.append(path)
        elif action == "refuse":
            report.failed[path] = f"{path}: {detail}"
        else:
            todo.append((path, str(plan.data), detail, _input_stat(path)))
    own_cluster = client is None
    if own_cluster:
        client = Client(LocalCluster(threads_per_worker=1, processes=True))
    try:
        workers = client.scheduler_info()["workers"]
        hosts: dict = {}
        for address in workers:
            host = address.rsplit(":", 1)[0]
            hosts[host] = hosts.get(host, 0) + 1
        futures = [client.submit(_segment_task, path, data, settings, device, labels,
                                 replace, hosts, key=f"learned_ssm-{i}-{Path(path).name}",
                                 pure=False)
                   for i, (path, data, replace, _) in enumerate(todo)]
        out_dir.mkdir(parents=True, exist_ok=True)
        outputs = {path: (data, stat) for path, data, _, stat in todo}
        bar = tqdm(total=len(futures), desc="segment", unit="file", disable=not progress)
        # One writer (this client) appends a line per finished file; a line torn by a kill
        # is ignored on reading, and that file is redone.
        with open(manifest, "a", encoding="utf-8") as log:
            for future in as_completed(futures):
                path, status, reason = future.result()
                bar.update()
                if status == "done":
                    report.done.append(path)
                    data, stat = outputs[path]
                    # The input as it was when the task was planned: a file changed while
                    # it was analysed is redone on the next run.
                    log.write(json.dumps({"output": data, **(stat or {"input": path}),
                                          "name": settings["name"], **key}) + "\n")
                    log.flush()
                else:
                    report.failed[path] = reason
        bar.close()
    finally:
        if own_cluster:
            cluster = client.cluster
            client.close()
            cluster.close()
    return report
