"""The web dashboard: a run's curves, gradient flow, alerts and watch slices, live in a browser.

:mod:`~lvseg.dashboard.readers` (the run store as JSON), :mod:`~lvseg.dashboard.server` (HTTP and
the live stream), :mod:`~lvseg.dashboard.launch` (the server process) and ``static/`` (the page).
It reads the run store only and never imports torch (the import contract checks it), so it opens
fast, runs on a machine without a GPU stack and never competes with the trainer it watches.
Nothing is imported here.
"""
