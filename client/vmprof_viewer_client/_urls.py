"""URLs of runs, without the HTTP machinery (kept out of every profiled call)."""


def run_url(server: str, run_id: str) -> str:
    return f"{server.rstrip('/')}/runs/{run_id}"
