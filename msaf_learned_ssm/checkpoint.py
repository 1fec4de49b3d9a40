"""Model files: saving and safely loading SSM-Net checkpoints.

Two formats are read:

* this package's checkpoints, a dictionary ``{"format_version", "config", "state_dict",
  ...}`` in which ``config`` is a :class:`~msaf_learned_ssm.config.ModelConfig` as a dict;
* the author's published state_dicts (``ssmnet_nbatt{1,3}_state_dict.pt``), whose
  architecture is inferred from the tensor names and shapes;
* ensembles, ``{"format_version", "ensemble": [member checkpoint, ...], "peaks", ...}``,
  loaded as one :class:`~msaf_learned_ssm.model.EnsembleSSMNet` (mean SSM, mean novelty),
  written by :func:`save_ensemble`.

Every file is read with ``torch.load(weights_only=True)``: a checkpoint from the internet
cannot run code.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from msaf_learned_ssm_jams.fileio import PathLike
from .config import ModelConfig, PeakConfig
from .errors import CheckpointError, ConfigError
from .fileio import atomic_open
from .model import EnsembleSSMNet, SSMNet


FORMAT_VERSION = 1

#: Most members an ensemble file may hold (each costs one forward pass per track).
MAX_ENSEMBLE = 8

# Author's state_dict names -> this package's module names.
_AUTHOR_PREFIXES = [("conv_novelty.", "novelty.kernels."), ("lin_novelty.", "novelty.combine."),
                    ("conv.", "encoder.conv."), ("attention.", "encoder.attention.")]


def atomic_torch_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A reader never sees a half-written file, even if the process is killed meanwhile.
    The object is serialised in memory first: a full disk then raises the ``OSError`` of
    the write (``No space left on device``), not torch's ``RuntimeError: unexpected pos``.

    Raises
    ------
    OSError
        The file could not be written (the old one, if any, is untouched).
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def _first_sentence(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception (torch's messages run for paragraphs)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(". ")[0].rstrip(".")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refusal_reason(exc: BaseException) -> str:
    """What the weights-only unpickler refused (e.g. ``unsupported GLOBAL posix.system``).

    torch's message also suggests retrying with ``weights_only=False``; that advice is
    not repeated to users, since following it would run the file's code.
    """
    skip = ("weights only load failed", "check the documentation", "please file an issue")
    for line in str(exc).splitlines():
        line = line.strip()
        if line and not line.lower().startswith(skip):
            return line.replace("WeightsUnpickler error: ", "").rstrip(".")
    return "unsupported pickle content"


def read_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint file safely (``weights_only=True``), tensors on the CPU.

    Raises
    ------
    CheckpointError
        Missing file, directory, truncated/corrupt file, or a pickle that asks to run
        code (refused).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot be read ({exc.strerror})") from None
    # torch.save writes a zip archive (PK..); very old files are a bare pickle (0x80). Other
    # bytes are not a checkpoint at all: say so, rather than the unpickler's "could run code".
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint file (neither a zip archive "
                              "nor a pickle)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refused to load: the file holds Python objects other than tensors "
                f"and plain values, which could run code ({_refusal_reason(exc)})") from None
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint "
                              f"({_first_sentence(exc)})") from exc
    except Exception as exc:
        # torch.load on a damaged or foreign file raises many types (RuntimeError from the
        # zip reader, EOFError, KeyError for a text file read as a legacy pickle...).
        raise CheckpointError(f"{path}: corrupt, truncated or not a checkpoint file "
                              f"({_first_sentence(exc)})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dictionary of tensors, got {type(data).__name__}")
    return data


def _is_author_state_dict(data: Mapping[str, Any]) -> bool:
    return "conv_novelty.weight" in data and all(torch.is_tensor(v) for v in data.values())


def config_from_author_state_dict(state_dict: Mapping[str, torch.Tensor]) -> ModelConfig:
    """Infer the architecture of an author's state_dict from its tensor names and shapes."""
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"attention\.(\d+)\.", k))}
    kernels = state_dict["conv_novelty.weight"]
    count, size = int(kernels.shape[0]), int(kernels.shape[-1])
    base = ModelConfig()
    # kernel_half_sec such that round(half_sec / hop) gives the stored kernel half-size.
    half_sec = ((size - 1) // 2) * base.patch_hop_sec
    return base.replace(attention_layers=len(layers), kernel_count=count,
                        kernel_half_sec=half_sec)


def convert_author_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the author's state_dict keys to this package's module names."""
    out = {}
    for key, value in state_dict.items():
        for old, new in _AUTHOR_PREFIXES:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def describe_mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]
                      ) -> str:
    """Human-readable difference between two state_dicts (missing, unexpected, shapes)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
              for k in sorted(set(expected) & set(found))
              if tuple(expected[k].shape) != tuple(found[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        parts.append("shape differences: " + "; ".join(shapes[:3]))
    return "; ".join(parts) or "no difference"


def model_settings(meta: Mapping[str, Any], source: str) -> tuple[PeakConfig, str]:
    """The peak picking and boundary placement (sync) a model file records (defaults where
    it records none); CheckpointError naming ``source`` (the model file) when invalid."""
    from .sync import check_sync

    peaks = meta.get("peaks")
    try:
        if peaks is not None and not isinstance(peaks, Mapping):
            raise ConfigError(f"expected a dictionary, got {type(peaks).__name__}")
        peak_config = PeakConfig(**dict(peaks or {}))
    except (TypeError, ConfigError) as exc:
        raise CheckpointError(f"{source}: invalid peak settings in the model file "
                              f"({exc})") from None
    try:
        sync = check_sync(meta.get("sync", "frame"))
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{source}: invalid boundary placement in the model file "
                              f"({exc})") from None
    return peak_config, sync


def _check_format_version(data: Mapping[str, Any], source: str) -> None:
    """CheckpointError naming ``source`` when the file's ``format_version`` is missing or
    newer than :data:`FORMAT_VERSION`."""
    version = data.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format version {version!r} is newer than this "
            f"msaf-learned-ssm understands ({FORMAT_VERSION}); upgrade the package")


def model_from_checkpoint_data(data: Mapping[str, Any], source: str = "<checkpoint>"
                               ) -> tuple[SSMNet, dict[str, Any]]:
    """Build the model from checkpoint contents (see :func:`load_model`)."""
    if "ensemble" in data:
        return _ensemble_from_data(data, source)
    if _is_author_state_dict(data):
        config = config_from_author_state_dict(data)
        state_dict, meta = convert_author_state_dict(data), {"source": "author state_dict"}
    elif "state_dict" in data and "config" in data:
        _check_format_version(data, source)
        try:
            config = ModelConfig.from_dict(data["config"])
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{source}: invalid model config: {exc}") from exc
        state_dict = data["state_dict"]
        if not isinstance(state_dict, Mapping) or not all(
                torch.is_tensor(v) for v in state_dict.values()):
            raise CheckpointError(f"{source}: 'state_dict' is not a dictionary of tensors")
        meta = {k: v for k, v in data.items() if k not in ("state_dict", "optimizer")}
    else:
        raise CheckpointError(f"{source}: not an SSM-Net checkpoint (keys: "
                              f"{', '.join(sorted(map(str, data))[:6])})")
    bad = [k for k, v in state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} weight tensors hold NaN or infinite values "
                              f"(e.g. {bad[0]}); the model cannot be used")
    model = SSMNet(config)
    expected = model.state_dict()
    if set(expected) != set(state_dict) or any(
            tuple(expected[k].shape) != tuple(state_dict[k].shape) for k in expected):
        raise CheckpointError(f"{source}: weights do not fit the architecture described by its "
                              f"config ({describe_mismatch(expected, state_dict)})")
    model.load_state_dict(state_dict)
    return model, meta


def _ensemble_from_data(data: Mapping[str, Any], source: str
                        ) -> tuple[EnsembleSSMNet, dict[str, Any]]:
    """An ensemble file's model (members checked one by one, naming the member)."""
    from .features import frontend_settings

    _check_format_version(data, source)
    members = data["ensemble"]
    if not isinstance(members, (list, tuple)) or not 2 <= len(members) <= MAX_ENSEMBLE \
            or not all(isinstance(m, Mapping) for m in members):
        raise CheckpointError(f"{source}: 'ensemble' must list 2 to {MAX_ENSEMBLE} member "
                              "checkpoints")
    models = []
    for i, member in enumerate(members):
        where = f"{source} (member {i + 1})"
        if "ensemble" in member:
            raise CheckpointError(f"{where}: an ensemble inside an ensemble")
        models.append(model_from_checkpoint_data(member, where)[0])
    first = models[0].config
    for i, model in enumerate(models[1:], start=2):
        if frontend_settings(model.config) != frontend_settings(first) \
                or model.config.patch_grid != first.patch_grid:
            raise CheckpointError(f"{source}: member {i}'s front-end or patch grid differs "
                                  "from member 1's (their patches would not line up)")
    meta = {k: v for k, v in data.items() if k != "ensemble"}
    meta.setdefault("members", [str(m.get("name", f"member {i + 1}"))
                                for i, m in enumerate(members)])
    return EnsembleSSMNet(models), meta


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu"
               ) -> tuple[SSMNet, dict[str, Any]]:
    """Load a model file (this package's checkpoint or the author's state_dict).

    Parameters
    ----------
    path : str or os.PathLike
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    model : SSMNet
        In eval mode.
    meta : dict
        The checkpoint's other entries (config, epoch, metrics...) without the weights.

    Raises
    ------
    CheckpointError
    """
    data = read_checkpoint(path)
    model, meta = model_from_checkpoint_data(data, str(path))
    return model.to(device).eval(), meta


def checkpoint_dict(model: SSMNet, **extra: Any) -> dict[str, Any]:
    """The dictionary saved in a model file: format version, config, weights, extras."""
    return {"format_version": FORMAT_VERSION, "config": model.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **extra}


def save_ensemble(models: "list[PathLike]", path: PathLike, **extra: Any) -> dict[str, Any]:
    """Write an ensemble file of the model files ``models`` (mean SSM, mean novelty).

    Each member is stored whole (converted to this package's format if it is an author's
    state_dict) with its name and file hash; the ensemble takes the first member's peak
    picking and boundary placement unless ``extra`` gives ``peaks`` / ``sync``.

    Parameters
    ----------
    models : list of path
        Two or more model files (not ensembles) of one front-end.
    path : path
        The ensemble file to write (atomically).
    **extra
        Plain values stored beside the members (``name``, ``license``, ``peaks``...).

    Returns
    -------
    dict
        What was written, without the weights: ``members`` (``"NAME sha256:HASH"`` each),
        ``peaks``, ``sync``.

    Raises
    ------
    CheckpointError
        A member that does not load (naming it), or members that cannot be averaged.
    """
    from .model_files import file_sha256, model_name

    members, records = [], []
    for model_path in models:
        data = read_checkpoint(model_path)
        if "ensemble" in data:
            raise CheckpointError(f"{model_path}: an ensemble; give its members instead")
        model, meta = model_from_checkpoint_data(data, str(model_path))
        name, sha = model_name(model_path), file_sha256(model_path)
        members.append(checkpoint_dict(model, name=name, sha256=sha,
                                       **{k: meta[k] for k in ("peaks", "sync") if k in meta}))
        records.append(f"{name} sha256:{sha}")
    if len(members) < 2:
        raise CheckpointError(f"an ensemble needs at least two models, got {len(members)}")
    first_peaks, first_sync = model_settings(members[0], str(models[0]))
    content = {"format_version": FORMAT_VERSION, "members": records,
               "peaks": first_peaks.to_dict(), "sync": first_sync, **extra}
    # Building it checks the members against each other before anything is written.
    _ensemble_from_data({**content, "ensemble": members}, str(path))
    atomic_torch_save({**content, "ensemble": members}, path)
    return content


def save_model(model: SSMNet, path: PathLike, **extra: Any) -> None:
    """Save a model file atomically (config inside); ``extra`` must be plain values."""
    atomic_torch_save(checkpoint_dict(model, **extra), path)
