"""msaf-learned-ssm: Peeters' learned self-similarity segmentation (ISMIR 2023) for MSAF.

Importing the package registers the ``learned_ssm`` algorithm (boundaries and labels) and
the ``learned_ssm`` features in MSAF::

    import msaf, msaf_learned_ssm
    msaf.process("song.mp3", boundaries_id="learned_ssm")
"""

from .config import ModelConfig, PeakConfig
from .errors import (AnnotationError, AudioLoadError, CheckpointError, ConfigError,
                     LearnedSSMError)
from .inference import Analysis, Analyzer, ShortAudioWarning, default_model_path
from .model import SSMNet
from .registration import register

__version__ = "0.1.0"

__all__ = ["Analysis", "Analyzer", "AnnotationError", "AudioLoadError", "CheckpointError",
           "ConfigError", "LearnedSSMError", "ModelConfig", "PeakConfig", "SSMNet",
           "ShortAudioWarning", "default_model_path", "register", "__version__"]

register()
