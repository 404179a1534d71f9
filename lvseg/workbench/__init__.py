"""The workbench: lvseg's training system in the browser (issue 19), torch-free.

A workspace folder (:mod:`~lvseg.workbench.workspace`: datasets, runs, exports, and the paths a
request may name), a queue of jobs in its SQLite database (:mod:`~lvseg.workbench.queue`), each
one of lvseg's own verbs with whitelisted options (:mod:`~lvseg.workbench.kinds`), and a runner
that runs them one at a time as subprocesses (:mod:`~lvseg.workbench.runner`).
"""

from lvseg.workbench.kinds import KINDS, JobKind, Option, job_kind
from lvseg.workbench.queue import STATES, Job, JobQueue
from lvseg.workbench.runner import Runner
from lvseg.workbench.workspace import Workspace, resolve_inside

__all__ = [
    "KINDS",
    "STATES",
    "Job",
    "JobKind",
    "JobQueue",
    "Option",
    "Runner",
    "Workspace",
    "job_kind",
    "resolve_inside",
]
