"""Shared helpers of the real-client tests: where the server is, tokens from the `roomcast token`
command, a REST call, a silence check, and a private server started with extra flags.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT, or https:// for a server started with
--tls-cert: then the sockets are wss://, and SSL_CERT_FILE names the test CA that urllib and
websockets trust), ROOMCAST_BIN (the binary) and ROOMCAST_DATA_DIR (the server's data
directory, whose jwt_secret `token` uses).
"""

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:18080")
WS = URL.replace("https://", "wss://").replace("http://", "ws://")
BIN = os.environ.get("ROOMCAST_BIN", "target/release/roomcast")
DATA_DIR = os.environ.get("ROOMCAST_DATA_DIR", "data")


def token(user, role=None, sid=None, scopes=None, data_dir=None):
    """A JWT for `user` signed with the server's secret (via `roomcast token`)."""
    args = [BIN, "token", "--user", user, "--data-dir", data_dir or DATA_DIR]
    if role:
        args += ["--role", role]
    if sid:
        args += ["--sid", sid]
    if scopes:
        args += ["--scopes", scopes]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def rest(method, path, tok, body=None, url=URL):
    """One REST call with a bearer token; returns (status, JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + tok)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def silent(ws, seconds):
    """True when no frame arrives within `seconds`; raises with the frame otherwise."""
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected frame: {frame}")


@contextlib.contextmanager
def private_server(*flags, shards=1):
    """A server of our own with extra flags; yields (port, data_dir) and stops it after."""
    work = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", work + "/data",
                               "--shards", str(shards), "--no-pin-cpus", *flags],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, work + "/data"
    finally:
        server.terminate()
        server.wait()
