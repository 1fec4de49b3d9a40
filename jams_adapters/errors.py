"""Exception types raised by msaf-learned-ssm (all its packages).

They live in this bottom layer so that the adapters import without the core package
(torch, MSAF); :mod:`msaf_learned_ssm.errors` re-exports them.

Every error the package raises on bad input derives from :class:`LearnedSSMError`, so a
caller can catch one type.  Each message names the offending file and what was wrong
with it.

Which call raises which
-----------------------
``Analyzer(model)``, ``checkpoint.load_model``, ``checkpoint.read_checkpoint``
    :class:`CheckpointError`: missing file, directory, truncated/corrupt file, a pickle
    that would run code (refused: files are read with ``torch.load(weights_only=True)``),
    a format version newer than this package, weights that do not fit the config (the
    message lists the missing/unexpected tensors and shape differences).
    :class:`ConfigError`: unknown device, CUDA requested without CUDA.
``Analyzer.analyze``, ``Analyzer.analyze_many`` (yielded, not raised), ``audio.load_audio``
    :class:`AudioLoadError`: missing file, directory, empty (0 bytes) file, a file no
    decoder reads (not audio, corrupt, truncated beyond repair), 0 samples, NaN or
    infinite samples. Audio too short to segment, or silent, is not an error: one segment
    ``[0, duration]`` and a :class:`~msaf_learned_ssm.inference.ShortAudioWarning`.
``Analyzer.analyze_audio``
    :class:`ConfigError`: not a 1-D array of finite samples, or no samples.
``msaf.process(..., boundaries_id="learned_ssm")``
    :class:`AudioLoadError` from the Segmenter, and from the ``feature="learned_ssm"``
    feature. MSAF computes its features before the Segmenter runs: with MSAF's own
    features (``"pcp"``, ...), a bad file raises MSAF's, librosa's or audioread's error
    first (and a missing file MSAF's ``NoAudioFileError``).
``msaf_learned_ssm_jams.read_segments`` and the other readers/writers
    :class:`AnnotationError`: missing file, not JSON, not JAMS, no segment annotation,
    invalid segments (unsorted, overlapping, negative, beyond the audio, empty labels), a
    write into a ``references`` folder or over an existing file.
``ModelConfig``, ``PeakConfig``, ``ModelConfig.from_dict``
    :class:`ConfigError`.
``msaf_learned_ssm_training.trainer.train``
    Bad tracks (audio or reference) are skipped and reported in the result's
    ``skipped`` (track id -> reason); :class:`LearnedSSMError` when no training track is
    usable; :class:`CheckpointError` for a missing or unusable resume state.
``msaf-learned-ssm segment``
    One ``error: <file>: <reason>`` line per failed file, the batch goes on (``--fail-fast``
    stops it), a summary line, exit status 1 when a file failed, 2 when nothing could
    start (bad model, device, or ``-o`` inside a ``references`` folder).
``msaf-learned-ssm train``
    One ``error:`` line and exit status 2 on a :class:`LearnedSSMError`; skipped tracks
    are listed as ``skipped <id>: <reason>``.
"""

from __future__ import annotations


class LearnedSSMError(Exception):
    """Base class of every error raised by msaf-learned-ssm on bad input."""


class AudioLoadError(LearnedSSMError):
    """An audio file is missing, unreadable, corrupt, empty or not finite."""


class AnnotationError(LearnedSSMError, ValueError):
    """A segment annotation (JAMS or another format) is missing or invalid."""


class CheckpointError(LearnedSSMError):
    """A model checkpoint is missing, corrupt, unsafe or of another architecture."""


class ConfigError(LearnedSSMError, ValueError):
    """A configuration value is out of range or of the wrong type."""


class OutputError(LearnedSSMError):
    """An output cannot be written as asked: it exists, collides with another, is not
    writable, or has a suffix that does not match its format."""
