"""Training SSM-Net on JAMS corpora: ground-truth targets, joint loss, training loop."""
