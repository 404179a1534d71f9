"""Watching a model learn: the live dashboard server (``server.py``, ``static/``).

The dashboard reads the run store only and never imports torch, so it opens fast, runs on a
machine without a GPU stack and never competes with the trainer it watches. Nothing is imported
here: ``import lvseg.monitor`` must stay free of torch and of the trainer's probes.
"""
