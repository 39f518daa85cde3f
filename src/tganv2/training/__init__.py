"""Training: the official update rule (``step``), checkpoints, distributed set-up and the loop."""
