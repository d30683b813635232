"""Supabase Storage stand-in: serves a folder as `{root}/{bucket}/{path}` over the Storage REST API.

GET /storage/v1/object/{bucket}/{path} (also .../object/authenticated/...) downloads; POST/PUT on the
same URL uploads (as the platform's signed-upload step would leave the object). Requests must carry
`apikey: KEY` and `Authorization: Bearer KEY`. Errors use Supabase's JSON shape. Fault injection and
counters: see common.py.

    python storage_server.py --root DIR --key KEY [--port 0] [--faults JSON] [--parent-pid PID]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Handler, serve  # noqa: E402

PREFIX = "/storage/v1/object/"


class StorageHandler(Handler):
    root: Path
    key: str

    def error(self, status: int, error: str, message: str) -> None:
        self.state.count(status)
        self.send_json(status, {"statusCode": str(status), "error": error, "message": message})

    def locate(self) -> Path | None:
        path = urlsplit(self.path).path
        if not path.startswith(PREFIX):
            return None
        rest = path[len(PREFIX):]
        if rest.startswith("authenticated/"):
            rest = rest[len("authenticated/"):]
        bucket, _, obj = rest.partition("/")
        bucket, obj = unquote(bucket), unquote(obj)
        parts = [bucket, *obj.split("/")]
        if not bucket or not obj or any(p in ("", ".", "..") for p in parts):
            return None
        return self.root.joinpath(*parts)

    def authorized(self) -> bool:
        return self.headers.get("apikey") == self.key and self.headers.get("Authorization") == f"Bearer {self.key}"

    def do_GET(self) -> None:  # noqa: N802
        if self.control("GET", b""):
            return
        rule = self.apply_fault(b"")
        if rule is not None and rule.get("answered"):
            return
        target = self.locate()
        if target is None:
            return self.error(400, "InvalidRequest", "Invalid object path")
        if not self.authorized():
            return self.error(400, "Unauthorized", "Invalid JWT")
        if not target.is_file():
            return self.error(404, "not_found", "Object not found")
        data = target.read_bytes()
        self.state.count(200, bytes_sent=len(data))
        truncate = bool(rule and rule.get("truncate"))
        self.send(200, data, content_type="application/pdf", truncate=truncate)

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_body()
        if self.control("POST", body):
            return
        target = self.locate()
        if target is None:
            return self.error(400, "InvalidRequest", "Invalid object path")
        if not self.authorized():
            return self.error(400, "Unauthorized", "Invalid JWT")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        self.state.count(200)
        self.send_json(200, {"Key": urlsplit(self.path).path[len(PREFIX):]})

    do_PUT = do_POST  # noqa: N815


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--faults")
    ap.add_argument("--parent-pid", type=int)
    a = ap.parse_args()
    StorageHandler.root = Path(a.root)
    StorageHandler.key = a.key
    serve(StorageHandler, a.port, a.faults, a.parent_pid)


if __name__ == "__main__":
    main()
