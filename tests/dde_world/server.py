"""A real ComfyUI server for tests: started on 127.0.0.1 (free port), always stopped.

Everything it writes stays in one temporary ``--base-directory`` (models, custom_nodes,
input, output, temp, user; the database in memory). The pack and the analytic test world are
linked into its ``custom_nodes``. Prompts go to ``/prompt``, results come from ``/history``
and the websocket.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

from .locate import PACK_ROOT

PACK_LINK = "comfyui-differential-edit"
WORLD_LINK = "dde_testworld"
#: a frontend's ``static`` folder to serve instead of the one ComfyUI's environment has (``--front-end-root``)
FRONT_END_ENV = "DDE_FRONT_END_ROOT"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, comfy_path: str, models_dir: str | None = None, python: str | None = None,
                 extra_args: list[str] | None = None):
        self.comfy_path = comfy_path
        self.python = python or sys.executable
        self.base = tempfile.mkdtemp(prefix="dde_server_")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.base, "server.log")
        self.extra_args = extra_args or []
        custom = os.path.join(self.base, "custom_nodes")
        os.makedirs(custom)
        os.symlink(PACK_ROOT, os.path.join(custom, PACK_LINK))
        os.symlink(os.path.dirname(os.path.abspath(__file__)), os.path.join(custom, WORLD_LINK))
        for d in ("input", "output", "temp", "user"):
            os.makedirs(os.path.join(self.base, d))
        models = os.path.join(self.base, "models")
        if models_dir:
            os.symlink(models_dir, models)
        else:
            os.makedirs(models)

    # -- life cycle ----------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> "ComfyServer":
        cmd = [self.python, os.path.join(self.comfy_path, "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", self.base, "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", *self.extra_args]
        front_end = os.environ.get(FRONT_END_ENV)
        if front_end and "--front-end-root" not in self.extra_args:
            cmd += ["--front-end-root", front_end]     # the frontend under test (.ci/run: the newest release)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=self.comfy_path, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"ComfyUI did not answer within {timeout}s:\n{self.log()[-4000:]}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    # -- HTTP ------------------------------------------------------------------------------
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def post(self, path: str, payload: dict, timeout: float = 30):
        req = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def queue(self, prompt: dict, client_id: str | None = None):
        """POST /prompt. Returns (status, body); body has ``prompt_id`` on success, ``node_errors`` otherwise."""
        payload = {"prompt": prompt}
        if client_id:
            payload["client_id"] = client_id
        return self.post("/prompt", payload)

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        """Poll ``/history`` until the prompt is done; returns its history entry."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            if prompt_id in hist and hist[prompt_id].get("status", {}).get("completed") is not None:
                entry = hist[prompt_id]
                if entry["status"].get("status_str") in ("success", "error"):
                    return entry
            if not self.alive():
                raise RuntimeError("ComfyUI died:\n" + self.log()[-4000:])
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} not done in {timeout}s")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        status, body = self.queue(prompt)
        if status != 200:
            raise AssertionError(f"/prompt refused ({status}): {json.dumps(body)[:2000]}")
        return self.wait(body["prompt_id"], timeout)

    def run_ws(self, prompt: dict, timeout: float = 300) -> tuple[dict, list[dict]]:
        """Queue over HTTP and follow the websocket until the prompt finishes: (history, messages)."""
        return asyncio.run(self._run_ws(prompt, timeout))

    async def _run_ws(self, prompt, timeout):
        import aiohttp

        client_id = uuid.uuid4().hex
        messages = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"ws://127.0.0.1:{self.port}/ws?clientId={client_id}") as ws:
                status, body = self.queue(prompt, client_id)
                if status != 200:
                    raise AssertionError(f"/prompt refused ({status}): {json.dumps(body)[:2000]}")
                pid = body["prompt_id"]
                deadline = time.time() + timeout
                while time.time() < deadline:
                    msg = await ws.receive(timeout=max(1.0, deadline - time.time()))
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    data = json.loads(msg.data)
                    messages.append(data)
                    d = data.get("data", {})
                    if d.get("prompt_id") == pid and data["type"] in ("execution_success", "execution_error",
                                                                       "execution_interrupted"):
                        break
        return self.wait(pid, timeout), messages


def report(history: dict, node: str) -> dict:
    """The DDETest_LatentReport payload of ``node`` in a history entry."""
    return json.loads(history["outputs"][node]["dde_report"][0])
