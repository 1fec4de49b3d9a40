"""Registration of the plugin in MSAF (its documented way to add an algorithm)."""

from __future__ import annotations


def register() -> None:
    """Make ``learned_ssm`` available to MSAF as a boundary and label algorithm, and
    ``learned_ssm`` as a feature. Idempotent; called on ``import msaf_learned_ssm``."""
    import msaf.algorithms

    from . import msaf_features  # noqa: F401  (defining the class registers the feature)
    from . import msaf_plugin

    setattr(msaf.algorithms, msaf_plugin.algo_id, msaf_plugin)
    if msaf_plugin.algo_id not in msaf.algorithms.__all__:
        msaf.algorithms.__all__.append(msaf_plugin.algo_id)
