"""Parallel propagation of sk_slim's networks (the ``parallel`` extra).

:mod:`sk_slim.parallel.mgrit` propagates ``make_resnet`` extractors forward and
backward by multigrid reduction in time (``pymgrit``).
"""
