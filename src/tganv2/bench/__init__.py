"""Evidence for the paper's cost claims: per-level FLOPs and activation memory (``cost``), their growth with
resolution (``scaling``), wall-clock training speed (``step``), and the ``tganv2 bench`` CLI (``cli``).

``cost`` and ``scaling`` run the real modules on the ``meta`` device, so they are deterministic and need
neither memory nor a GPU; ``step`` times real ``Trainer.step`` calls on the current device.
"""
