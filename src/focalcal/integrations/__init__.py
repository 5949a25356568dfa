"""Adapters that plug focalcal into other libraries; each lives in its own submodule and needs its optional extra.

* :mod:`focalcal.integrations.torchmetrics`: ``torchmetrics.Metric`` classes (ECE, AdaECE, classwise-ECE, MCE,
  reliability bins) for Lightning modules and ``MetricCollection`` with DDP sync;
  ``pip install 'focalcal[torchmetrics]'``.

Importing this package imports none of those libraries.
"""
