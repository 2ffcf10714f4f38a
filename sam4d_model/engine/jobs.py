# Copyright 2026 The sam4d_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Sequences as independent jobs: run them one after the other, or on a Ray cluster (optional dependency).

A job labels one sequence of a Waymo-4DSeg layout root and writes the result (see :mod:`.writer`); finished
sequences (a report with the same settings fingerprint) are skipped, so an interrupted run resumes where it stopped.
Ray is imported only when a Ray address is given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from .config import EngineConfig
from .masklets import MaskletSource

#: Version of the engine's output; part of the fingerprint so that results of older engines are redone.
ENGINE_VERSION = 1


@dataclass
class Job:
    """One sequence to label."""

    root: str
    seq: str
    out_root: str
    source: MaskletSource
    config: EngineConfig = field(default_factory=EngineConfig)
    evaluate: bool = False
    baseline: bool = False
    overwrite: bool = False
    min_points: int = 50

    def fingerprint(self) -> dict:
        """Settings that determine the result (a finished sequence is redone when they change)."""
        return {"engine_version": ENGINE_VERSION, "source": self.source.fingerprint(),
                "config": self.config.to_dict(), "evaluate": self.evaluate, "baseline": self.baseline}


def _summary(job: Job, status: str, report: Optional[dict], seconds: float) -> dict:
    out = {"seq": job.seq, "status": status, "seconds": round(seconds, 3)}
    if report:
        out["num_objects"] = report.get("num_objects")
        out["frames_per_hour_stages_2_5"] = report.get("frames_per_hour_stages_2_5")
        m = report.get("metrics") or {}
        for run, doms in m.items():
            for dom, v in doms.items():
                out[f"{run}_{dom}_miou"] = v.get("mean_iou")
    return out


def run_job(job: Job, progress: bool = False) -> dict:
    """Label one sequence (or skip it if finished); returns a small summary dict."""
    from ..data.waymo4dseg import read_sequence
    from .pipeline import label_sequence
    from .writer import is_finished, load_report, write_result

    t0 = time.perf_counter()
    fp = job.fingerprint()
    if not job.overwrite and is_finished(job.out_root, job.seq, fp):
        return _summary(job, "skipped", load_report(job.out_root, job.seq), time.perf_counter() - t0)
    in_place = os.path.abspath(job.out_root) == os.path.abspath(job.root)
    label_dir = os.path.join(job.out_root, "sam4d_labels", job.seq)
    if in_place and not job.overwrite and os.path.isdir(label_dir) and load_report(job.out_root, job.seq) is None:
        raise FileExistsError(f"{label_dir} exists and was not written by the engine (use --overwrite or --out)")
    seq = read_sequence(job.root, job.seq)
    res = label_sequence(seq, job.source, job.config, progress=progress, baseline=job.baseline,
                         evaluate=job.evaluate, min_points=job.min_points)
    overwrite = job.overwrite or not in_place
    write_result(res, job.out_root, fp, seq_root=job.root, overwrite=overwrite)
    return _summary(job, "done", load_report(job.out_root, job.seq), time.perf_counter() - t0)


def run_jobs(jobs: List[Job], ray_address: Optional[str] = None, num_workers: Optional[int] = None,
             progress: bool = True, on_result: Optional[Callable[[dict], None]] = None) -> List[dict]:
    """Run jobs sequentially, or on Ray when ``ray_address`` is given.

    ``ray_address``: ``'local'`` starts a local Ray instance with ``num_workers`` CPUs (one job per CPU); anything
    else (``'auto'``, ``'ray://host:10001'``, ``'host:6379'``) connects to an existing cluster, whose nodes must have
    ``sam4d_model`` installed. Results come back in job order.
    """
    if ray_address is None:
        out = []
        it = jobs
        bar = None
        if progress and len(jobs) > 1:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="sequences", unit="seq", dynamic_ncols=True)
        for j in it:
            s = run_job(j, progress=progress)
            out.append(s)
            if on_result:
                on_result(s)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return out
    return _run_ray(jobs, ray_address, num_workers, progress, on_result)


def _run_ray(jobs: List[Job], address: str, num_workers: Optional[int], progress: bool,
             on_result: Optional[Callable[[dict], None]]) -> List[dict]:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("--ray needs the 'ray' package (pip install 'ray>=2.9')") from e
    env = {"env_vars": {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}}
    started = False
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=num_workers or os.cpu_count(), include_dashboard=False, runtime_env=env,
                     log_to_driver=False)
        else:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(run_job)
        refs = [remote.remote(j) for j in jobs]
        index = {r: i for i, r in enumerate(refs)}
        out: List[Optional[dict]] = [None] * len(jobs)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(jobs), desc="sequences (ray)", unit="seq", dynamic_ncols=True)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                s = ray.get(r)
                out[index[r]] = s
                if on_result:
                    on_result(s)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        return out
    finally:
        if started:
            ray.shutdown()
