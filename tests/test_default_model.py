"""The shipped models: present, loadable; the default (author-nbatt3, the best model on real
recordings) is used when no model is named, by the Analyzer, the CLI and MSAF's plugin."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import msaf
import msaf_learned_ssm
from msaf_learned_ssm import Analyzer, ModelConfig, default_model_path
from msaf_learned_ssm.checkpoint import read_checkpoint
from msaf_learned_ssm.model_files import (DEFAULT_MODEL, MODELS_DIR, NAMED_MODELS, file_sha256,
                                          model_name, resolve_model)


def test_default_is_the_author_nbatt3_checkpoint():
    assert DEFAULT_MODEL == "author-nbatt3"
    assert resolve_model(None) == resolve_model("default") == MODELS_DIR / "author-nbatt3.pt"
    assert default_model_path() == MODELS_DIR / "author-nbatt3.pt"
    # Outputs name the model "default" stands for, never the alias.
    assert model_name(default_model_path()) == "author-nbatt3"
    data = read_checkpoint(default_model_path())
    assert data["peaks"] == {"mean_half_sec": 10.0, "min_distance_sec": 7.0, "threshold": 1.35}
    assert data["license"].startswith("LGPL-3.0")


@pytest.mark.parametrize("name", sorted(NAMED_MODELS))
def test_every_named_model_is_shipped_small_and_loads(name):
    path = resolve_model(name)
    assert path.is_file() and path.stat().st_size < 10 * 2 ** 20
    analyzer = Analyzer(name, device="cpu")
    assert analyzer.identity == {"name": name, "sha256": file_sha256(path)}


@pytest.mark.parametrize("name", ["pop909-band", "pop909-piano"])
def test_models_trained_here_carry_their_training_record(name):
    data = read_checkpoint(resolve_model(name))
    assert ModelConfig.from_dict(data["config"]).attention_layers == 3
    assert data["metrics"]["val_HR3F"] > 0.3  # what training recorded for model selection
    card = (MODELS_DIR / "MODEL_CARD.md").read_text()
    assert f"`{name}`" in card and "test split" in card
    assert (MODELS_DIR / f"{name}_training_log.jsonl").is_file()


def test_analyzer_and_cli_default_to_author_nbatt3(planted_track):
    from msaf_learned_ssm.cli import main

    analyzer = Analyzer(device="cpu")
    assert analyzer.identity["name"] == "author-nbatt3"
    assert analyzer.peaks == Analyzer("author-nbatt3", device="cpu").peaks
    result = analyzer.analyze(planted_track[0])
    assert result.boundaries[0] == 0 and np.all(np.diff(result.boundaries) > 0)
    with CliRunner().isolated_filesystem():
        run = CliRunner().invoke(main, ["segment", str(planted_track[0]), "-o", "out.jams",
                                        "--no-labels"])
        assert run.exit_code == 0, run.output
        line = next(x for x in run.output.splitlines() if x.startswith(str(planted_track[0])))
        printed = np.array([float(t) for t in line.split("\t")[1].split()])
        np.testing.assert_allclose(printed, result.boundaries, atol=1e-3)
        with open("out.jams", encoding="utf-8") as handle:
            sandbox = json.load(handle)["annotations"][0]["sandbox"]
        assert "author-nbatt3" in json.dumps(sandbox)


def test_msaf_process_without_model_argument_uses_author_nbatt3(planted_track, tmp_path,
                                                                monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert msaf.algorithms.learned_ssm.config["ssm_model"] == "default"
    times, labels = msaf.process(str(planted_track[0]), feature="learned_ssm", framesync=True,
                                 boundaries_id="learned_ssm", labels_id="learned_ssm")
    own = Analyzer("author-nbatt3", device="cpu").analyze(planted_track[0]).boundaries
    inner = times[1:-1][times[1:-1] < times[-1] - 0.1]
    assert len(inner) == len(own) - 2
    np.testing.assert_allclose(inner, own[1:-1], atol=0.05)
    assert len(labels) == len(times) - 1
    assert msaf_learned_ssm.msaf_plugin.get_analyzer().identity["name"] == "author-nbatt3"


def test_default_model_finds_boundaries_of_the_bundled_example():
    from msaf_learned_ssm.examples import synthesize_sections

    from conftest import hits

    y, planted = synthesize_sections("ABCABDAB", 15.0)  # what examples/make_example.py writes
    found = Analyzer(device="cpu").analyze_audio(y).boundaries[1:-1]
    assert hits(found, planted[1:-1], window=1.5) >= len(planted) - 4  # 5 of 7
    assert len(found) <= len(planted) - 1
