"""The trained model shipped in the package: present, loadable, used when no model is named."""

from __future__ import annotations

import numpy as np

import msaf
import msaf_learned_ssm
from msaf_learned_ssm import Analyzer, ModelConfig, default_model_path
from msaf_learned_ssm.checkpoint import read_checkpoint


def test_default_model_is_shipped_small_and_complete():
    path = default_model_path()
    assert path.stat().st_size < 10 * 2 ** 20
    data = read_checkpoint(path)
    assert ModelConfig.from_dict(data["config"]) == ModelConfig()
    assert data["metrics"]["val_HR3F"] > 0.3  # what training recorded for model selection
    card = path.with_name("MODEL_CARD.md").read_text()
    assert "test split" in card


def test_analyzer_and_cli_default_to_shipped_model(planted_track):
    analyzer = Analyzer(device="cpu")
    assert analyzer.meta.get("epoch") == read_checkpoint(default_model_path())["epoch"]
    result = analyzer.analyze(planted_track[0])
    assert result.boundaries[0] == 0 and np.all(np.diff(result.boundaries) > 0)


def test_msaf_process_without_model_argument_uses_shipped_model(planted_track, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert msaf.algorithms.learned_ssm.config["ssm_model"] == "default"
    times, labels = msaf.process(str(planted_track[0]), feature="learned_ssm", framesync=True,
                                 boundaries_id="learned_ssm", labels_id="learned_ssm")
    own = Analyzer(device="cpu").analyze(planted_track[0]).boundaries
    inner = times[1:-1][times[1:-1] < times[-1] - 0.1]
    assert len(inner) == len(own) - 2
    assert len(labels) == len(times) - 1
    assert msaf_learned_ssm.msaf_plugin.get_analyzer().meta.get("epoch") is not None


def test_shipped_model_finds_boundaries_of_the_bundled_example():
    from msaf_learned_ssm.examples import synthesize_sections

    from conftest import hits

    y, planted = synthesize_sections("ABCABDAB", 15.0)  # what examples/make_example.py writes
    found = Analyzer(device="cpu").analyze_audio(y).boundaries[1:-1]
    assert hits(found, planted[1:-1], window=1.5) >= len(planted) - 3  # 6 of 7
    assert len(found) <= len(planted) - 1
