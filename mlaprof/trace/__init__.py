"""Arrow trace files: the one format the kernel, the simulator, analysis and the dashboard share."""

from mlaprof.trace.schema import SCHEMA, SCHEMA_VERSION, TraceMeta  # noqa: F401
from mlaprof.trace.io import Trace, TraceError, read_trace, write_trace  # noqa: F401
