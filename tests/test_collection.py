"""Collection-scale segmentation on Dask: a LocalCluster of 2 worker processes, outputs equal
to single-file results, a bad file reported without stopping the run, and a rerun that
skips what is done."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("distributed", reason="dask.distributed (the [dask] extra) is needed")

from msaf_learned_ssm.collection import MANIFEST_NAME, segment_collection  # noqa: E402
from msaf_learned_ssm.examples import synthesize_sections  # noqa: E402
from msaf_learned_ssm.inference import Analyzer  # noqa: E402
from msaf_learned_ssm_jams.segments import read_segments  # noqa: E402


@pytest.fixture(scope="module")
def cluster_client():
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_two_workers_match_single_file_results_and_resume(cluster_client, model_path, tmp_path):
    files = []
    for i, form in enumerate(("ABAB", "AABB", "ABCA")):
        path = tmp_path / "in" / f"s{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, synthesize_sections(form, 8.0, seed=i)[0], 22050)
        files.append(path)
    bad = tmp_path / "in" / "broken.wav"
    bad.write_bytes(b"not audio")
    out = tmp_path / "out"
    report = segment_collection([*files, bad], out, client=cluster_client, model=str(model_path),
                                device="cpu", progress=False)
    assert sorted(report.done) == sorted(map(str, files)) and list(report.failed) == [str(bad)]
    assert "broken.wav" in report.failed[str(bad)]
    analyzer = Analyzer(model_path, "cpu")
    for path in files:
        intervals, _ = read_segments(out / f"{path.stem}.jams")
        np.testing.assert_allclose(np.unique(intervals.ravel()),
                                   analyzer.analyze(path).boundaries, atol=1e-6)
    manifest = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(manifest) == 3 and all(m["sha256"] for m in manifest)
    again = segment_collection(files, out, client=cluster_client, model=str(model_path),
                               device="cpu", progress=False)
    assert sorted(again.skipped) == sorted(map(str, files)) and not again.done


def test_the_beat_tracker_choice_reaches_the_workers_and_the_manifest(cluster_client,
                                                                     model_path, tmp_path):
    from msaf_learned_ssm.errors import ConfigError

    path = tmp_path / "in" / "song.wav"
    path.parent.mkdir()
    sf.write(path, synthesize_sections("ABAB", 8.0, seed=3)[0], 22050)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="beat tracker must be one of"):
        segment_collection([path], out, client=cluster_client, model=str(model_path),
                           device="cpu", progress=False, beats="librosa")
    assert not out.exists() or not any(out.iterdir())  # refused before any task
    report = segment_collection([path], out, client=cluster_client, model=str(model_path),
                                device="cpu", sync="bar", beats="package", progress=False)
    assert report.done == [str(path)]
    jam = json.loads((out / "song.jams").read_text())
    segment = [a for a in jam["annotations"] if a["namespace"] == "segment_open"][0]
    assert segment["sandbox"]["ssm_beats"] == "package"
    assert segment["sandbox"]["ssm_sync"] == "bar"
    manifest = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert manifest[-1]["beats"] == "package"
    again = segment_collection([path], out, client=cluster_client, model=str(model_path),
                               device="cpu", sync="bar", beats="package", progress=False)
    assert again.skipped == [str(path)]
