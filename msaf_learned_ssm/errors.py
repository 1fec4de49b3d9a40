"""Exception types raised by msaf-learned-ssm.

Every error the package raises on bad input derives from :class:`LearnedSSMError`, so a
caller can catch one type.  Each message names the offending file and what was wrong
with it.
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
