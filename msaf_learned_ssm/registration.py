"""Registration of the plugin in MSAF (its documented way to add an algorithm)."""

from __future__ import annotations


#: Audio extensions added to MSAF's collection mode.
AUDIO_EXTS = (".flac", ".ogg")


def register() -> None:
    """Make ``learned_ssm`` available to MSAF as a boundary and label algorithm, and
    ``learned_ssm`` as a feature, and let MSAF's collection mode find ``.flac`` and
    ``.ogg`` files. MSAF's features files are keyed on the audio's content
    (:func:`~msaf_learned_ssm.msaf_features.install_feature_identity`), and this algorithm's
    estimations record the model, its settings and the audio
    (:func:`~msaf_learned_ssm.msaf_plugin.install_estimation_records`). Idempotent; called
    on ``import msaf_learned_ssm``."""
    import msaf.algorithms

    from . import msaf_features  # defining the class registers the feature
    from . import msaf_plugin

    msaf_features.install_feature_identity()
    msaf_plugin.install_estimation_records()
    setattr(msaf.algorithms, msaf_plugin.algo_id, msaf_plugin)
    if msaf_plugin.algo_id not in msaf.algorithms.__all__:
        msaf.algorithms.__all__.append(msaf_plugin.algo_id)
    # MSAF's collection mode only lists .wav, .mp3 and .aif files; lossless FLAC and Ogg
    # corpora (such as the rendered POP909) are common in MIR, and librosa reads both.
    exts = msaf.config.dataset.audio_exts
    for ext in AUDIO_EXTS:
        if ext not in exts:
            exts.append(ext)
