"""Training: :mod:`~lvseg.train.engine` runs a training in phases (setup, loop, checkpointing,
resume, around the shared :mod:`~lvseg.train.state`) on its data, losses, random states and
distribution; :mod:`~lvseg.train.select` picks a checkpoint across runs."""
