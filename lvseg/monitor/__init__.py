"""Watching a model learn, on the training side (rank 0 of the engine; imports torch).

:mod:`~lvseg.monitor.probes` (per-layer gradient, weight and activation statistics, one host
transfer per logged step), :mod:`~lvseg.monitor.alerts` (vanishing, exploding, dead units,
non-finite), :mod:`~lvseg.monitor.watch` (fixed validation slices: prediction and CAM every
epoch), :mod:`~lvseg.monitor.tensorboard`, and :mod:`~lvseg.monitor.recorder`, which the engine
calls. They write rows to the run store; :mod:`lvseg.dashboard` reads them from there.
"""
