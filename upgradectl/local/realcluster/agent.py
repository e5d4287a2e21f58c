"""The node agent: what stands in for a kubelet on the real control plane (no containers run here).

- registers one Ready Node (address 127.0.0.1; its kubelet endpoint is the agent's own log server),
- binds every unscheduled pod to it (there is no scheduler),
- the product's helm Job pods: RUNS the pod's command as a local process with the real helm binary,
  acting as the pod's ServiceAccount (a TokenRequest token bound to the pod, and the cluster CA, as
  files, in a kubeconfig of the pod's own), with the pod's env; the exit code ends the pod, the output
  is the pod's log, served to the API server on the node's kubelet port (/containerLogs), so the
  product reads it with pods/log as it reads a real pod's log. A pod whose image is not the helm the
  agent runs, or whose command is not helm, is failed without running anything.
- customer workloads: Running and Ready, or Running and never Ready when the fault rule matches (an
  image tag pattern such as `*-broken`, also when the tag carries a pinned digest, or a namespace in `never_ready_namespaces`),
- other Job pods (helm hooks): Succeeded with exit code 0; terminating pods: deleted (their helm killed).

Pods only ever get 127.0.0.1. Every helm process is in its own session and is killed by its PID.
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import json
import logging
import os
import signal
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import requests
import yaml
from upgrader.images.references import parse_reference
from upgrader.infra.errors import InvalidValue
from upgrader.infra.names import JOB_NAMESPACE

from upgradectl.local.realcluster.helm import Helm
from upgradectl.local.realcluster.pki import Pki

LOGGER = logging.getLogger(__name__)
NODE_NAME = "local-node"
HELM_CONTAINER = "helm"  # upgrader.cluster.jobs.CONTAINER_NAME (not imported: it loads the kubernetes client)
LOOPBACK = "127.0.0.1"
POLL_SECONDS = 0.25


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FaultRule:
    """Which customer pods never become Ready (so `helm --wait` fails for real)."""

    broken_tag_pattern: str = "*-broken"
    never_ready_namespaces: set[str] = field(default_factory=set)

    def never_ready(self, pod: dict[str, Any]) -> bool:
        if pod["metadata"]["namespace"] in self.never_ready_namespaces:
            return True
        for container in pod["spec"].get("containers", []):
            tag = image_tag(str(container.get("image", "")))
            if self.broken_tag_pattern and tag is not None and fnmatch.fnmatchcase(tag, self.broken_tag_pattern):
                return True
        return False


def image_tag(image: str) -> str | None:
    """The tag of a pod's image, without the digest a deploy pinned (`…/api:v9.9.9-bad@sha256:…` -> `v9.9.9-bad`);
    None when there is none, or the image is not a reference."""
    try:
        return parse_reference(image).tag
    except InvalidValue:
        return None


@dataclass
class HelmRun:
    """One helm Job pod being run: its process and its log file."""

    namespace: str
    pod: str
    process: subprocess.Popen[bytes]
    log: Path
    started: str


class NodeAgent:
    def __init__(self, api_url: str, ca_file: Path, token: str, helm: Helm, directory: Path, pki: Pki,
                 *, expected_image: str, faults: FaultRule | None = None) -> None:  # fmt: skip
        self.api_url = api_url
        self.ca_file = ca_file
        self.helm = helm
        self.directory = directory
        self.pki = pki
        self.expected_image = expected_image
        self.faults = faults or FaultRule()
        self.session = requests.Session()
        self.session.verify = str(ca_file)
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.runs: dict[str, HelmRun] = {}  # pod uid -> run
        self.helm_results: list[tuple[str, int]] = []  # (pod name, exit code), in order
        self._handled: dict[str, str] = {}  # pod uid -> the state we last wrote
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log_server: http.server.ThreadingHTTPServer | None = None
        self.errors: list[str] = []

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> NodeAgent:
        (self.directory / "pods").mkdir(parents=True, exist_ok=True)
        port = self._start_log_server()
        self._register_node(port)
        self._thread = threading.Thread(target=self._loop, name="node-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            _kill(run.process)
        if self._log_server is not None:
            self._log_server.shutdown()
            self._log_server.server_close()

    def helm_processes(self) -> list[HelmRun]:
        """The helm processes running now (tests kill one mid-upgrade)."""
        with self._lock:
            return [run for run in self.runs.values() if run.process.poll() is None]

    # --- API calls ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        response = self.session.request(method, self.api_url + path, data=None if body is None else json.dumps(body),
                                        headers={"Content-Type": content_type}, timeout=15,
                                        verify=str(self.ca_file))  # explicit: REQUESTS_CA_BUNDLE would win over the session's  # fmt: skip
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def _register_node(self, port: int) -> None:
        node = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux"}}}  # fmt: skip
        if self._call("GET", f"/api/v1/nodes/{NODE_NAME}") is None:
            self._call("POST", "/api/v1/nodes", node)
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"}
        status = {"status": {
            "capacity": capacity, "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": LOOPBACK}, {"type": "Hostname", "address": NODE_NAME}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "node agent ready",
                            "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}],
            "nodeInfo": {"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "local-agent://1", "kernelVersion": "",
                         "osImage": "", "machineID": "", "systemUUID": "", "bootID": ""},
        }}  # fmt: skip
        self._call("PATCH", f"/api/v1/nodes/{NODE_NAME}/status", status, "application/merge-patch+json")

    # --- the loop -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._reap()
                pods = (self._call("GET", "/api/v1/pods") or {}).get("items", [])
                seen = set()
                for pod in pods:
                    seen.add(pod["metadata"]["uid"])
                    self._handle(pod)
                with self._lock:
                    for uid in [u for u in self._handled if u not in seen]:
                        self._handled.pop(uid, None)
            except Exception as exc:  # noqa: BLE001 - the agent keeps going, as a kubelet would
                if not self._stop.is_set():
                    self.errors.append(str(exc))
                    LOGGER.warning("node agent: %s", exc)
            self._stop.wait(POLL_SECONDS)

    def _handle(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        if meta.get("deletionTimestamp"):
            with self._lock:
                run = self.runs.pop(uid, None)
            if run is not None:
                _kill(run.process)
            self._call("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})
            return
        if not spec.get("nodeName"):
            self._call("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}})  # fmt: skip
            return
        if spec["nodeName"] != NODE_NAME or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        if uid in self._handled:
            return
        owners = {o.get("kind") for o in meta.get("ownerReferences", [])}
        containers = spec.get("containers", [])
        if ns == JOB_NAMESPACE and "Job" in owners and any(c["name"] == HELM_CONTAINER for c in containers):
            self._start_helm(pod)
        elif "Job" in owners or "helm.sh/hook" in (meta.get("annotations") or {}):
            self._set_status(pod, "Succeeded", exit_code=0)
        else:
            self._set_status(pod, "Running", ready=not self.faults.never_ready(pod))

    def _set_status(self, pod: dict[str, Any], phase: str, *, ready: bool = False, exit_code: int | None = None,
                    started: str | None = None, message: str = "") -> None:  # fmt: skip
        meta = pod["metadata"]
        now = _now()
        started = started or now
        statuses = []
        for container in pod["spec"].get("containers", []):
            if phase == "Running":
                state: dict[str, Any] = {"running": {"startedAt": started}}
            else:
                state = {"terminated": {"exitCode": exit_code or 0, "reason": "Completed" if exit_code == 0 else "Error",
                                        "startedAt": started, "finishedAt": now, "message": message}}  # fmt: skip
            statuses.append({"name": container["name"], "image": container.get("image", ""), "imageID": "",
                             "ready": ready, "restartCount": 0, "started": phase == "Running", "state": state})  # fmt: skip
        ready_text = "True" if ready else "False"
        body = {"status": {
            "phase": phase, "hostIP": LOOPBACK, "podIP": LOOPBACK, "podIPs": [{"ip": LOOPBACK}], "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": now},
                {"type": "Ready", "status": ready_text, "lastTransitionTime": now},
            ],
            "containerStatuses": statuses,
            **({"message": message, "reason": "NodeAgentRefused"} if message and phase == "Failed" else {}),
        }}  # fmt: skip
        self._call("PATCH", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", body,
                   "application/merge-patch+json")  # fmt: skip
        with self._lock:
            self._handled[meta["uid"]] = phase

    # --- helm Job pods ------------------------------------------------------------------------------

    def _start_helm(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        container = next(c for c in spec["containers"] if c["name"] == HELM_CONTAINER)
        argv = [*container.get("command", []), *container.get("args", [])]
        log = self._pod_dir(meta["namespace"], meta["name"]) / f"{HELM_CONTAINER}.log"
        if container.get("image") != self.expected_image:
            message = (f"node agent: image {container.get('image')!r} is not the helm this node runs "
                       f"({self.expected_image}); nothing was run")  # fmt: skip
            log.write_text(message + "\n", encoding="utf-8")
            self._set_status(pod, "Failed", exit_code=126, message=message)
            return
        if not argv or argv[0] != "helm":
            message = f"node agent: the container's command is not helm ({argv[:1]}); nothing was run"
            log.write_text(message + "\n", encoding="utf-8")
            self._set_status(pod, "Failed", exit_code=126, message=message)
            return
        env = self._helm_env(pod, container)
        started = _now()
        with log.open("wb") as out:
            process = subprocess.Popen([str(self.helm.path), *argv[1:]], stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                       stdin=subprocess.DEVNULL, env=env, cwd=env["HOME"], start_new_session=True)  # fmt: skip
        with self._lock:
            self.runs[meta["uid"]] = HelmRun(meta["namespace"], meta["name"], process, log, started)
        self._set_status(pod, "Running", ready=True, started=started)

    def _reap(self) -> None:
        """Pods whose helm process ended: Succeeded or Failed with its exit code."""
        with self._lock:
            done = [(uid, run) for uid, run in self.runs.items() if run.process.poll() is not None]
            for uid, _ in done:
                self.runs.pop(uid, None)
        for uid, run in done:
            code = run.process.returncode
            exit_code = code if code >= 0 else 128 - code  # killed by a signal: 128 + its number
            self.helm_results.append((run.pod, exit_code))
            pod = self._call("GET", f"/api/v1/namespaces/{run.namespace}/pods/{run.pod}")
            if pod is None or pod["metadata"]["uid"] != uid:
                continue
            self._set_status(pod, "Succeeded" if exit_code == 0 else "Failed", exit_code=exit_code, started=run.started)

    def _helm_env(self, pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
        """The pod's env with its volumes mapped to local folders, and its ServiceAccount as a kubeconfig."""
        meta = pod["metadata"]
        home = self._pod_dir(meta["namespace"], meta["name"])
        mounts = {m["mountPath"]: home / "volumes" / m["name"] for m in container.get("volumeMounts", [])}
        for local in mounts.values():
            local.mkdir(parents=True, exist_ok=True)
        env: dict[str, str] = {"PATH": "/usr/bin:/bin"}
        for item in container.get("env", []):
            value = str(item.get("value", ""))
            for mount, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
                if value == mount or value.startswith(mount + "/"):
                    value = str(local) + value[len(mount) :]
                    break
            env[item["name"]] = value
        env.setdefault("HOME", str(home))
        token = self._service_account_token(pod)
        token_file = home / "token"
        token_file.write_text(token, encoding="utf-8")
        token_file.chmod(0o600)
        kubeconfig = {
            "apiVersion": "v1", "kind": "Config", "current-context": "in-cluster",
            "clusters": [{"name": "in-cluster", "cluster": {"server": self.api_url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": "sa", "user": {"tokenFile": str(token_file)}}],
            "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "sa", "namespace": meta["namespace"]}}],
        }  # fmt: skip
        path = home / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig), encoding="utf-8")
        path.chmod(0o600)
        env["KUBECONFIG"] = str(path)
        host, port = self.api_url.removeprefix("https://").rsplit(":", 1)
        env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"] = host, port
        env["SSL_CERT_FILE"] = str(self.ca_file)  # the chart registry's certificate is from the same CA
        return env

    def _service_account_token(self, pod: dict[str, Any]) -> str:
        meta = pod["metadata"]
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
            "audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}}  # fmt: skip
        answer = self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token", body)
        if not answer:
            raise RuntimeError(f"no ServiceAccount {meta['namespace']}/{account} for pod {meta['name']}")
        return str(answer["status"]["token"])

    def _pod_dir(self, namespace: str, name: str) -> Path:
        path = self.directory / "pods" / f"{namespace}_{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # --- the kubelet's log endpoint -----------------------------------------------------------------

    def _start_log_server(self) -> int:
        cert, key = self.pki.issue("node-agent", common_name=NODE_NAME)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.load_verify_locations(str(self.pki.ca_cert))
        context.verify_mode = ssl.CERT_REQUIRED  # only the API server (its kubelet client certificate) reads logs
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                parts = [unquote(p) for p in self.path.split("?", 1)[0].strip("/").split("/")]
                if len(parts) == 4 and parts[0] == "containerLogs":
                    log = agent.directory / "pods" / f"{parts[1]}_{parts[2]}" / f"{parts[3]}.log"
                    if (
                        log.is_file()
                        and "/" not in parts[1] + parts[2] + parts[3]
                        and ".." not in parts[1] + parts[2] + parts[3]
                    ):
                        data = log.read_bytes()
                        self.send_response(200)
                        self.send_header("Content-Type", "text/plain")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)
                        return
                self.send_error(404, "no such container log")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

        server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._log_server = server
        threading.Thread(target=server.serve_forever, name="node-agent-logs", daemon=True).start()
        return int(server.server_address[1])


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
