"""The ``learned_ssm`` algorithm module for MSAF.

MSAF looks algorithms up as attributes of ``msaf.algorithms``; a module there has
``Segmenter``, ``config``, ``algo_id``, ``is_boundary_type`` and ``is_label_type``.
:func:`msaf_learned_ssm.register` puts this module there.

How boundary times reach MSAF
-----------------------------
MSAF computes its own features (``feature=``, default ``"pcp"`` on estimated beats) for
every track and turns the frame indices a Segmenter returns into times with those
features' ``frame_times``. This Segmenter computes its boundaries in seconds from its own
front-end, then returns, for each boundary, the index whose MSAF time stamp is nearest.

* ``framesync=True``: the returned times are within one MSAF frame (1024 / 22050 s,
  about 46 ms) of the model's own.
* beat-synchronous (MSAF's default): each boundary moves to the nearest estimated beat.
  MSAF stamps beat-synchronous frame i with the time of beat i + 1; matching on those
  stamps (not on the beat grid) keeps the returned times on the nearest beat instead of
  one beat late.
* ``feature="learned_ssm"`` selects :class:`msaf_learned_ssm.msaf_features.LearnedSSMGrid`,
  a cheap feature that spares MSAF computing PCP/MFCC the model does not use. MSAF needs
  *some* feature object per track (its length and time stamps) and always tracks beats
  for its shared feature cache, so that part cannot be avoided (see msaf_features.py).

Parallel collection mode
------------------------
``msaf.process(folder, n_jobs=2)`` runs tracks in joblib workers, which import a fresh
MSAF that has never heard of this plugin. ``config["ssm_plugin"]`` is a
:class:`PluginTag`, a ``str`` subclass defined in this package: unpickling the config in a
worker imports ``msaf_learned_ssm``, which registers the algorithm there. It is still a
plain string for JSON (MSAF writes the config into the estimation JAMS and matches it at
evaluation). Keep it when you build your own config (start from a copy of this module's
``config``).

What an estimation records
--------------------------
MSAF writes the config it was given into the estimation JAMS: ``ssm_model: "default"``
and ``None`` for the model's own peak and sync settings would say nothing of what ran.
:func:`install_estimation_records` (run by :func:`~msaf_learned_ssm.registration.register`)
makes MSAF's ``save_estimations`` record, for this algorithm, what the command line
records (:func:`recorded_settings`: the model's name, its file's SHA-256, the effective
``ssm_peak_*`` and ``ssm_sync``) and the audio file's path and content hash
(``file_metadata.identifiers``), and ``read_estimations`` (``msaf.eval``) look the
estimation up by those same effective settings. An estimation file that records another
audio (MSAF names it after the audio file's name) is replaced, with a warning, rather than
mixed with this audio's.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import os
import warnings
from typing import Any, Optional

import numpy as np

from msaf.algorithms.interface import SegmenterInterface

from .config import FINE_LEVEL_PEAKS, PEAK_MAX_SEC, PeakConfig
from .errors import AudioLoadError, ConfigError, LearnedSSMError
from .labels import DEFAULT_SIMILARITY as DEFAULT_LABEL_SIMILARITY


class PluginTag(str):
    """A string whose unpickling imports (and so registers) ``msaf_learned_ssm``."""


algo_id = "learned_ssm"
is_boundary_type = True
is_label_type = True

#: Peak-picking settings: ``ssm_peak_<field>`` for each PeakConfig field; None means "the
#: model file's own" (the author's 10 / 7 / 1.35 for the author's models, including the
#: default, author-nbatt3; tuned on the validation renders for the pop909-* models).
_PEAK_KEYS = {f"ssm_peak_{f.name}": f.name for f in dataclasses.fields(PeakConfig)}
#: The fine level of the hierarchical mode (its local-mean window is the flat level's).
_FINE_KEYS = {f"ssm_fine_peak_{name}": name for name in ("min_distance_sec", "threshold")}

#: Algorithm settings. Every value is JSON-serialisable (MSAF stores it in the estimation
#: JAMS). Keys are prefixed with ``ssm_`` so they never clash with another algorithm's; an
#: unknown ``ssm_`` key (a misspelling) is an error, never silently ignored.
config: dict[str, Any] = {
    "ssm_plugin": PluginTag("msaf_learned_ssm"),
    # A shipped model's name ("default" = "author-nbatt3", "author-nbatt1",
    # "author-ensemble", "pop909-band", "pop909-piano", "nbatt3-teach", "nbatt3-decor-teach",
    # "nbatt3-distill", "scratch-decor", "scratch-decor-teach") or a model file.
    "ssm_model": "default",
    # "auto" (CUDA when available), "cpu", "cuda".
    "ssm_device": "auto",
    **{key: None for key in _PEAK_KEYS},
    # Where boundaries fall: "frame" (novelty peaks), "beat" or "bar" (moved to the nearest
    # beat / downbeat of the package's beat tracker); None: the model file's own.
    "ssm_sync": None,
    # Beat tracker of the beat and bar modes and of the labels' beat-synchronous chroma:
    # "auto" (madmom's for ssm_sync "beat" and "bar" when it is installed, else the
    # package's), "package" (the shipped one) or "madmom" (an optional install, models
    # CC BY-NC-SA 4.0; see msaf_learned_ssm.madmom_beats).
    "ssm_beats": "auto",
    # Labels: segments whose similarity (in [0, 1]: the learned one weighted with the
    # 2D-FMC similarity of beat-synchronous chroma, labels.DEFAULT_CHROMA_WEIGHT) is at
    # least this share a label (average-linkage clustering), or "auto" (number of labels
    # by silhouette); None: labels.DEFAULT_THRESHOLD.
    # The learned similarity is "aligned" (best time lag between the two segments) or
    # "mean" (mean over the two segments' block).
    "ssm_label_threshold": None,
    "ssm_label_similarity": DEFAULT_LABEL_SIMILARITY,
    # Hierarchical mode (hier=True): a finer level of phrases from the same novelty curve
    # with a lower ratio threshold and a shorter minimum distance; the coarse level is the
    # flat segmentation above, and the fine level contains all its boundaries.
    **{key: getattr(FINE_LEVEL_PEAKS, name) for key, name in _FINE_KEYS.items()},
}


def _check_value(key: str, value: Any) -> None:
    """ConfigError naming ``key`` when ``value`` is not a valid value of that setting."""
    from .labels import SIMILARITIES
    from .sync import check_sync

    if value is None and (key in _PEAK_KEYS or key in _FINE_KEYS
                          or key in ("ssm_sync", "ssm_label_threshold")):
        return
    if key == "ssm_model":
        ok = isinstance(value, (str, os.PathLike)) and str(value) != ""
        expected = "a model name or a model file path"
    elif key == "ssm_device":
        ok, expected = isinstance(value, str) and value != "", "'auto', 'cpu' or 'cuda'"
    elif key in _PEAK_KEYS or key in _FINE_KEYS:
        name = _PEAK_KEYS.get(key) or _FINE_KEYS[key]
        try:
            PeakConfig().updated(**{name: value})
            ok = not isinstance(value, (bool, str))
        except (ConfigError, TypeError, ValueError, OverflowError):
            ok = False
        expected = "a finite number >= 0" + (f" (seconds, at most {PEAK_MAX_SEC:g})"
                                             if name.endswith("_sec") else "")
    elif key == "ssm_sync":
        try:
            ok = isinstance(value, str) and check_sync(value) == value
        except ConfigError:
            ok = False
        from .sync import SYNC_MODES
        expected = f"one of {', '.join(SYNC_MODES)} or None"
    elif key == "ssm_beats":
        from .madmom_beats import BEAT_BACKENDS

        ok = isinstance(value, str) and value in BEAT_BACKENDS
        expected = f"one of {', '.join(BEAT_BACKENDS)}"
    elif key == "ssm_label_threshold":
        ok = value == "auto" if isinstance(value, str) else (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= 1)
        expected = "a number in [0, 1], 'auto' or None"
    elif key == "ssm_label_similarity":
        ok = isinstance(value, str) and value in SIMILARITIES
        expected = f"one of {', '.join(SIMILARITIES)}"
    else:
        return
    if not ok:
        raise ConfigError(f"learned_ssm setting {key!r} must be {expected}, got {value!r}")


def check_config(cfg: dict) -> None:
    """Raise ConfigError for an ``ssm_`` key this plugin does not know (with a suggestion),
    or for a value of the wrong type or range (naming the key)."""
    unknown = sorted(k for k in cfg if str(k).startswith("ssm_") and k not in config)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(config), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown learned_ssm setting {key!r}{hint}; known settings: "
                          f"{', '.join(sorted(config))}")
    for key, value in cfg.items():
        if str(key).startswith("ssm_"):
            _check_value(key, value)


@functools.lru_cache(maxsize=32)
def _model_record(path: str, size: int, mtime_ns: int) -> tuple[dict, PeakConfig, str]:
    """(name and SHA-256, peak settings, sync mode) of a model file, read without building
    the model (as :class:`~msaf_learned_ssm.inference.Analyzer` reads them)."""
    from .checkpoint import model_settings, read_checkpoint
    from .model_files import file_sha256, model_name

    peaks, sync = model_settings(read_checkpoint(path), path)
    return ({"name": model_name(path), "sha256": file_sha256(path)}, peaks, sync)


def recorded_settings(cfg: dict) -> dict:
    """The settings an estimation of MSAF config ``cfg`` records, as the command line's
    (:func:`~msaf_learned_ssm.result_files.estimation_config`): ``ssm_model`` (the model's
    name: ``"default"`` becomes the model it stands for), ``ssm_model_sha256``, and the
    effective ``ssm_peak_*`` and ``ssm_sync`` (the model file's own where ``cfg`` has None),
    and ``ssm_beats``, the beat tracker that runs (``"auto"`` resolved).

    Raises
    ------
    CheckpointError, ConfigError
        The model file is missing or unusable, or a setting is invalid.
    """
    from .model_files import resolve_model
    from .madmom_beats import resolve_beat_backend
    from .result_files import estimation_config
    from .sync import check_sync

    check_config(cfg)
    path = resolve_model(cfg.get("ssm_model", config["ssm_model"]))
    try:
        st = os.stat(path)
    except OSError as exc:
        from .errors import CheckpointError

        raise CheckpointError(f"{path}: cannot read the model file ({exc.strerror})") from None
    identity, peaks, sync = _model_record(str(path), st.st_size, st.st_mtime_ns)
    given = cfg.get("ssm_sync")
    sync = check_sync(given) if given is not None else sync
    return estimation_config(identity, peak_config(cfg, peaks), sync,
                             resolve_beat_backend(cfg.get("ssm_beats"), sync))


def _is_ours(boundaries_id: Optional[str], labels_id: Optional[str]) -> bool:
    return algo_id in (boundaries_id, labels_id)


def _recorded_source(est_file: str) -> dict:
    try:
        with open(est_file, encoding="utf-8") as handle:
            ids = json.load(handle).get("file_metadata", {}).get("identifiers") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    return ids if isinstance(ids, dict) else {}


def _drop_other_audio(est_file: str, source: Optional[dict]) -> None:
    """Remove (with a warning) an estimation file that records another audio."""
    old = _recorded_source(est_file)
    if source and old.get("audio_sha256") and old["audio_sha256"] != source["audio_sha256"]:
        warnings.warn(f"{est_file} held the estimations of {old.get('audio_path')}; it now "
                      f"holds those of {source['audio_path']} (MSAF names estimation files "
                      "after the audio file's name)")
        os.unlink(est_file)


def _stamp_source(est_file: str, source: Optional[dict]) -> None:
    """Record the audio's path and content hash in the estimation file (atomically)."""
    from .fileio import atomic_write_text

    if not source:
        return
    try:
        with open(est_file, encoding="utf-8") as handle:
            jam = json.load(handle)
    except (OSError, ValueError):
        return
    metadata = jam.setdefault("file_metadata", {})
    metadata["identifiers"] = {**(metadata.get("identifiers") or {}), **source}
    atomic_write_text(est_file, json.dumps(jam, indent=2))


def install_estimation_records() -> None:
    """Wrap MSAF's ``save_estimations`` and ``read_estimations`` so that this algorithm's
    estimations record :func:`recorded_settings` and the audio's identity, and are looked
    up by them (idempotent; other algorithms' calls pass through unchanged)."""
    import msaf.input_output as msaf_io

    if getattr(msaf_io.save_estimations, "_learned_ssm", False):
        return
    save, read = msaf_io.save_estimations, msaf_io.read_estimations

    def save_estimations(file_struct, times, labels, boundaries_id, labels_id, **params):
        if not _is_ours(boundaries_id, labels_id):
            return save(file_struct, times, labels, boundaries_id, labels_id, **params)
        from .fileio import audio_identity

        params = {**params, **recorded_settings(params)}
        try:
            source = audio_identity(file_struct.audio_file)
        except OSError:
            source = None
        _drop_other_audio(file_struct.est_file, source)
        result = save(file_struct, times, labels, boundaries_id, labels_id, **params)
        _stamp_source(file_struct.est_file, source)
        return result

    def read_estimations(est_file, boundaries_id, labels_id=None, **params):
        if _is_ours(boundaries_id, labels_id):
            try:
                params = {**params, **recorded_settings(params)}
            except LearnedSSMError:
                pass  # the model file is gone: look the estimation up as configured
        return read(est_file, boundaries_id, labels_id, **params)

    save_estimations._learned_ssm = read_estimations._learned_ssm = True
    msaf_io.save_estimations, msaf_io.read_estimations = save_estimations, read_estimations


def get_analyzer(model: str = "default", device: str = "auto", beats: str = "auto"):
    """The process's shared :class:`~msaf_learned_ssm.inference.Analyzer` for (model,
    device, beat tracker)."""
    from .inference import shared_analyzer

    return shared_analyzer(model, device, beats)


def times_to_frame_indices(times: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """Index of the frame whose time stamp is nearest to each time.

    Parameters
    ----------
    times : np.ndarray, shape (n,)
        Times in seconds.
    frame_times : np.ndarray, shape (N,)
        Increasing time stamps of MSAF's feature frames.

    Returns
    -------
    np.ndarray of int, shape (n,)
    """
    times = np.asarray(times, dtype=float)
    frame_times = np.asarray(frame_times, dtype=float)
    right = np.clip(np.searchsorted(frame_times, times), 1, len(frame_times) - 1)
    left = right - 1
    nearer_left = np.abs(times - frame_times[left]) <= np.abs(frame_times[right] - times)
    return np.where(nearer_left, left, right).astype(int)


def boundaries_to_msaf_indices(inner_times: np.ndarray, frame_times: np.ndarray) -> np.ndarray:
    """MSAF boundary indices ``[0, ..., N - 1]`` for the inner boundary times.

    Boundaries that land on the first or last frame, or on the same frame as another, are
    merged (MSAF adds 0 and N - 1 itself).
    """
    n = len(frame_times)
    idx = times_to_frame_indices(inner_times, frame_times) if len(inner_times) else []
    idx = np.unique([i for i in idx if 0 < i < n - 1])
    return np.concatenate([[0], idx, [n - 1]]).astype(int)


def peak_config(cfg: dict, model_peaks: PeakConfig) -> PeakConfig:
    """The flat level's peak picking: the model's own, with the ``ssm_peak_*`` values set."""
    return model_peaks.updated(**{name: cfg.get(key) for key, name in _PEAK_KEYS.items()})


def fine_peak_config(cfg: dict, coarse: PeakConfig) -> PeakConfig:
    """The fine level's peak picking (hierarchical mode)."""
    fine = coarse.updated(**{name: getattr(FINE_LEVEL_PEAKS, name) for name in _FINE_KEYS.values()})
    return fine.updated(**{name: cfg.get(key) for key, name in _FINE_KEYS.items()})


def hierarchical_peaks(novelty: np.ndarray, hop_sec: float, coarse: PeakConfig,
                       fine: PeakConfig) -> list[np.ndarray]:
    """Two nested levels of novelty peaks: [coarse, coarse + fine].

    Parameters
    ----------
    novelty : np.ndarray, shape (T,)
    hop_sec : float
        Time between novelty values (s).
    coarse, fine : PeakConfig
        Peak picking of the section level and of the phrase level.

    Returns
    -------
    list of two sorted int arrays (patch indices); the second contains the first.
    """
    from .peaks import pick_peaks

    top = pick_peaks(novelty, hop_sec, coarse)
    return [top, np.union1d(top, pick_peaks(novelty, hop_sec, fine)).astype(int)]


class Segmenter(SegmenterInterface):
    """MSAF Segmenter running the learned SSM model on the track's audio."""

    def _preprocess(self, valid_features=None) -> np.ndarray:
        """MSAF's feature matrix. MSAF's own check accepts only its five features, so
        labelling given boundaries (``boundaries_id="gt"`` or another algorithm's, which
        MSAF's ``_postprocess`` does through this) failed with ``feature="learned_ssm"``."""
        return self.features.features

    def _frame_times(self) -> np.ndarray:
        """Time stamps of MSAF's feature frames for this track (one per frame)."""
        n_frames = self.features.features.shape[0]
        return np.asarray(self.features.frame_times)[:n_frames]

    def _analyzer(self):
        check_config(self.config)
        return get_analyzer(self._setting("ssm_model"), self._setting("ssm_device"),
                            self._setting("ssm_beats"))

    def _setting(self, key: str) -> Any:
        """A setting from MSAF's config, or this module's default when MSAF's lacks it."""
        return self.config.get(key, config[key])

    def _analysis(self, peaks: PeakConfig | None = None, labels: bool = False):
        analyzer = self._analyzer()
        analysis = analyzer.analyze(self.audio_file,
                                    peaks=peaks or peak_config(self.config, analyzer.peaks),
                                    sync=self._setting("ssm_sync"), labels=labels)
        self._check_msaf_grid(analysis.duration)
        return analysis

    def _check_msaf_grid(self, duration: float) -> None:
        """MSAF's features must describe this audio: MSAF reuses a features file whose audio
        has the same *file name*, so a stale one would map our times onto another track's
        grid (e.g. a 60 s analysis onto a 30 s grid)."""
        msaf_dur = getattr(self.features, "dur", None)
        if msaf_dur is None or abs(float(msaf_dur) - duration) <= max(0.5, 0.01 * duration):
            return
        stale = getattr(getattr(self.features, "file_struct", None), "features_file", None)
        raise AudioLoadError(
            f"{self.audio_file}: MSAF's features describe {float(msaf_dur):.2f} s of audio but "
            f"the file lasts {duration:.2f} s: MSAF reused the features of another file with "
            f"the same name ({stale}); delete that file and run again")

    def _labels(self, analysis, seg_times: np.ndarray) -> np.ndarray:
        return analysis.labels(seg_times, self._setting("ssm_label_threshold"),
                               self._setting("ssm_label_similarity"))

    def processHierarchical(self):
        """Two levels (sections, then phrases) from the same novelty curve.

        Returns
        -------
        est_idxs : list of two np.ndarray
            Boundary indices on MSAF's frame grid per level, coarse first.
        est_labels : list of two np.ndarray
            Labels per level, from the learned SSM.
        """
        from .peaks import boundary_times
        from .sync import sync_boundaries

        frame_times = self._frame_times()
        coarse = peak_config(self.config, self._analyzer().peaks)
        fine = fine_peak_config(self.config, coarse)
        analysis = self._analysis(coarse, labels=True)
        hop_sec = self._analyzer().config.grid_hop_sec(analysis.patch_times)
        est_idxs, est_labels = [], []
        for peaks in hierarchical_peaks(analysis.novelty, hop_sec, coarse, fine):
            times = boundary_times(peaks, analysis.patch_times, analysis.duration)
            if analysis.beats is not None:
                times = sync_boundaries(times, analysis.beats, analysis.sync)
            idxs = boundaries_to_msaf_indices(times[1:-1], frame_times)
            idxs, labels = self._postprocess(idxs, self._labels(analysis, frame_times[idxs]))
            est_idxs.append(idxs)
            est_labels.append(labels)
        return est_idxs, est_labels

    def processFlat(self):
        """Boundaries (frame indices on MSAF's grid) and labels of the track."""
        frame_times = self._frame_times()
        # MSAF passes in_labels=[] when it wants boundaries only from this module.
        want_labels = "in_labels" not in self.config
        analysis = None
        if self.in_bound_idxs is None:
            analysis = self._analysis(labels=want_labels)
            est_idxs = boundaries_to_msaf_indices(analysis.boundaries[1:-1], frame_times)
        else:
            est_idxs = np.asarray(self.in_bound_idxs, dtype=int)
        if not want_labels:
            est_labels = np.ones(len(est_idxs) - 1) * -1
        else:
            analysis = analysis or self._analysis(labels=True)
            seg_times = frame_times[np.minimum(est_idxs, len(frame_times) - 1)]
            est_labels = self._labels(analysis, seg_times)
        return self._postprocess(est_idxs, est_labels)
