"""Exception types raised by msaf-learned-ssm (defined in the bottom layer, re-exported here).

See :mod:`msaf_learned_ssm_jams.errors` for which call raises which.
"""

from msaf_learned_ssm_jams.errors import (AnnotationError, AudioLoadError, CheckpointError,
                                          ConfigError, LearnedSSMError, OutputError)

__all__ = ["LearnedSSMError", "AudioLoadError", "AnnotationError", "CheckpointError",
           "ConfigError", "OutputError"]
