"""vmprof-viewer client: profile Python functions with vmprof.

    import vmprof_viewer_client

    vmprof_viewer_client.configure("My project")

    @vmprof_viewer_client.profile
    def some_func():
        ...

Each call of a decorated function is recorded with vmprof (CPU stacks and
RSS) and handed to the local vmpv-agent, which streams it to the
vmprof-viewer server. Without an agent the finished profile is uploaded to
the configured server URL, or kept in the spool directory with a command to
upload it later.
"""

from ._profile import last_run_id, last_run_url, profile, profiling
from ._settings import configure

__version__ = "1.0.0"

__all__ = ["configure", "profile", "profiling", "last_run_id", "last_run_url", "__version__"]
