"""Losses of SSM-Net: class-balanced BCE on the SSM, BCE on the novelty, their mix."""

from __future__ import annotations

import torch

_EPS = 1e-7


def weighted_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with the classes balanced, as the author's SSM-loss.

    Positives are weighted by (number of zeros) / n and negatives by (number of ones) / n,
    so the rare class counts as much as the common one.

    Parameters
    ----------
    pred : torch.Tensor, any shape
        Probabilities in [0, 1].
    target : torch.Tensor, same shape
        Targets in [0, 1].

    Returns
    -------
    torch.Tensor, scalar
    """
    n = target.numel()
    n_one = target.sum()
    n_zero = n - n_one
    p = pred.clamp(_EPS, 1 - _EPS)
    loss = (n_zero / n) * target * p.log() + (n_one / n) * (1 - target) * (1 - p).log()
    return -loss.mean()


def novelty_bce(pred: torch.Tensor, target: torch.Tensor, balanced: bool = False
                ) -> torch.Tensor:
    """BCE of the novelty curve (T,) against the smoothed ground truth (T,).

    ``balanced=True`` applies the positive/negative weighting of :func:`weighted_bce`.
    """
    if balanced:
        return weighted_bce(pred, target)
    p = pred.clamp(_EPS, 1 - _EPS)
    return -(target * p.log() + (1 - target) * (1 - p).log()).mean()


def soft_bce(pred: torch.Tensor, target: torch.Tensor, balanced: bool = True
             ) -> torch.Tensor:
    """Binary cross-entropy against soft targets (a teacher's probabilities), as a divergence.

    Each element's BCE less its target's own BCE (``t log t + (1 - t) log(1 - t)``, which
    does not depend on ``pred``): the element-wise binary KL divergence, 0 exactly where
    ``pred`` equals ``target``, positive elsewhere, and smallest at the target. With
    ``balanced``, each element is weighted as in :func:`weighted_bce`, by the share of zeros
    ((n - sum t) / n) for its positive part ``t`` and the share of ones (sum t / n) for its
    negative part ``1 - t``: one weight per element, ``t w1 + (1 - t) w0``, so that the
    weighting balances the classes without moving the minimum away from the target. For
    0/1 targets this is :func:`weighted_bce` (and :func:`novelty_bce` without ``balanced``)
    up to the clamping constant.

    Parameters
    ----------
    pred : torch.Tensor, any shape
        Probabilities in [0, 1].
    target : torch.Tensor, same shape
        Soft targets in [0, 1].
    balanced : bool
        Class-balanced weights (the SSM-loss) or none (the novelty loss).

    Returns
    -------
    torch.Tensor, scalar, >= 0
    """
    p = pred.clamp(_EPS, 1 - _EPS)
    t = target.clamp(_EPS, 1 - _EPS)
    divergence = target * (t.log() - p.log()) + (1 - target) * ((1 - t).log() - (1 - p).log())
    if not balanced:
        return divergence.mean()
    n = target.numel()
    n_one = target.sum()
    weight = target * ((n - n_one) / n) + (1 - target) * (n_one / n)
    return (weight * divergence).mean()


def joint_loss(ssm_loss: torch.Tensor, novelty_loss: torch.Tensor, alpha: float
               ) -> torch.Tensor:
    """``alpha * ssm_loss + (1 - alpha) * novelty_loss`` (alpha in [0, 1])."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * ssm_loss + (1.0 - alpha) * novelty_loss
