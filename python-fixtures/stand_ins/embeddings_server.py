"""OpenAI embeddings stand-in: POST /v1/embeddings (and /embeddings) as the OpenAI API defines it.

`input` may be a string or a list of strings; `encoding_format` float (default) or base64
(little-endian float32). Each vector is a deterministic unit vector derived from the text's sha256, so
reruns and other clients get identical vectors; `usage` counts ceil(chars / 4) tokens per input.
Requires `Authorization: Bearer KEY` when --key is given. `--dim` sets the vector length (1536);
a fault rule may carry "dim" to answer with another length. Fault injection and counters: common.py.

    python embeddings_server.py [--key KEY] [--port 0] [--dim 1536] [--faults JSON] [--parent-pid PID]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Handler, serve  # noqa: E402


def unit_vector(text: str, dim: int) -> list[float]:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    rng = random.Random(seed)
    values = [rng.random() - 0.5 for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class EmbeddingsHandler(Handler):
    key: str | None
    dim: int

    def do_GET(self) -> None:  # noqa: N802
        if not self.control("GET", b""):
            self.send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self.read_body()
        if self.control("POST", body):
            return
        if self.path.split("?")[0] not in ("/v1/embeddings", "/embeddings"):
            self.state.count(404)
            return self.send_json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})
        if self.key is not None and self.headers.get("Authorization") != f"Bearer {self.key}":
            self.state.count(401)
            return self.send_json(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                  "code": "invalid_api_key"}})
        rule = self.apply_fault(body)
        if rule is not None and rule.get("answered"):
            return
        try:
            req = json.loads(body)
            inputs = req["input"]
            model = req.get("model") or "text-embedding-3-small"
        except (ValueError, KeyError, TypeError):
            self.state.count(400)
            return self.send_json(400, {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}})
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            self.state.count(400)
            return self.send_json(400, {"error": {"message": "input must be a string or a list of strings",
                                                  "type": "invalid_request_error"}})
        dim = int((rule or {}).get("dim") or self.dim)
        fmt = req.get("encoding_format") or "float"
        data = []
        tokens = 0
        for i, text in enumerate(inputs):
            vec = unit_vector(text, dim)
            tokens += max(1, math.ceil(len(text) / 4))
            if fmt == "base64":
                emb = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode("ascii")
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        payload = {"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        self.state.count(200, inputs=len(inputs))
        self.send(200, json.dumps(payload).encode(), truncate=bool((rule or {}).get("truncate")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--key")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--faults")
    ap.add_argument("--parent-pid", type=int)
    a = ap.parse_args()
    EmbeddingsHandler.key = a.key
    EmbeddingsHandler.dim = a.dim
    serve(EmbeddingsHandler, a.port, a.faults, a.parent_pid)


if __name__ == "__main__":
    main()
