"""A local stand-in for AWS KMS: Encrypt and Decrypt of the JSON 1.1 protocol
(X-Amz-Target: TrentService.*), over a real socket, for boto3's kms client.

Each KeyId gets its own AES-256 key on first use; a ciphertext blob carries the
KeyId it was made under, as KMS's do. Signatures are not checked (a stand-in).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KmsStandin:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}
        self.calls: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> KmsStandin:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _encrypt(self, body: dict[str, Any]) -> dict[str, Any]:
        kid = body["KeyId"]
        key = self.keys.setdefault(kid, secrets.token_bytes(32))
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key).encrypt(nonce, base64.b64decode(body["Plaintext"]), None)
        blob = len(kid).to_bytes(2, "big") + kid.encode() + nonce + sealed
        return {"CiphertextBlob": base64.b64encode(blob).decode(), "KeyId": kid}

    def _decrypt(self, body: dict[str, Any]) -> dict[str, Any]:
        blob = base64.b64decode(body["CiphertextBlob"])
        n = int.from_bytes(blob[:2], "big")
        kid = blob[2 : 2 + n].decode()
        nonce, sealed = blob[2 + n : 14 + n], blob[14 + n :]
        plain = AESGCM(self.keys[kid]).decrypt(nonce, sealed, None)
        return {"Plaintext": base64.b64encode(plain).decode(), "KeyId": kid}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                target = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                standin.calls.append(target)
                actions = {"Encrypt": standin._encrypt, "Decrypt": standin._decrypt}
                if target not in actions:
                    self._answer(400, {"__type": "UnsupportedOperationException"})
                    return
                try:
                    self._answer(200, actions[target](body))
                except (KeyError, ValueError):
                    self._answer(400, {"__type": "InvalidCiphertextException"})

            def _answer(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
