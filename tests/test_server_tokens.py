"""vmpv-server's --read-token and --admin-token flags."""
from __future__ import annotations

from pathlib import Path

from harness import http_json, start_server


def test_read_and_admin_tokens(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--read-token", "reader", "--admin-token", "admin")
    try:
        base = server.address
        assert http_json(f"{base}/api/runs")[0] == 401
        assert http_json(f"{base}/api/runs", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert http_json(f"{base}/api/runs", headers={"Authorization": "Bearer reader"})[0] == 200
        missing = "0" * 32
        assert http_json(f"{base}/api/runs/{missing}", method="DELETE",
                         headers={"Authorization": "Bearer reader"})[0] == 403
        assert http_json(f"{base}/api/runs/{missing}", method="DELETE",
                         headers={"Authorization": "Bearer admin"})[0] == 404
        # Pages stay public: the UI itself asks for the token.
        status, _ = http_json(f"{base}/")
        assert status == 200
    finally:
        assert server.stop() == 0, server.log()[-2000:]
