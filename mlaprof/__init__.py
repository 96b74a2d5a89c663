"""mlaprof: schedule, run, trace and visualise an MLA-decode megakernel.

Data flows one way: Workload -> Schedule -> instruction tensor -> kernel or simulator -> Arrow trace
-> analysis/diff -> dashboard.  Each arrow is one import direction.
"""

__version__ = "0.1.0"
