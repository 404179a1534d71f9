"""Watching a model learn.

Training side (rank 0 of the engine; imports torch): :mod:`~lvseg.monitor.probes` (per-layer
gradient, weight and activation statistics, one host transfer per logged step),
:mod:`~lvseg.monitor.alerts` (vanishing, exploding, dead units, non-finite),
:mod:`~lvseg.monitor.watch` (fixed validation slices: prediction and CAM every epoch),
:mod:`~lvseg.monitor.tensorboard`, and :mod:`~lvseg.monitor.recorder`, which the engine calls.

Reading side: the dashboard (``readers.py``: the run store as JSON; ``server.py``: HTTP and the
live stream; ``launch.py``: the server process; ``static/``: the page) reads the run store only
and never imports torch, so it opens fast, runs on a machine without a GPU stack and never
competes with the trainer it watches. Nothing is imported here: ``import lvseg.monitor`` must
stay free of torch and of the trainer's probes.
"""
