"""etcd + the real kube-apiserver and kube-controller-manager v1.20.2 on 127.0.0.1, with TLS, static
tokens (an admin, and the product's two identities in the groups k8s/rbac binds) and RBAC.

The binaries come from scripts/realk8s/build-control-plane.sh (built once, cached under
~/.cache/customer-upgrades/<source package version>/bin). Flags are those measured to work
(shared notes "real-kubernetes"): the controllers a machine without cloud, nodes' IPAM or volumes needs.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
import urllib.request
from pathlib import Path

from upgrader.infra.names import JOBS_KUBERNETES_GROUP, READER_KUBERNETES_GROUP

from upgradectl.local.functions import ROOT
from upgradectl.local.realcluster.pki import Pki
from upgradectl.local.realcluster.processes import Process, StartError, free_port, on_free_ports, wait_until

BUILD_SCRIPT = ROOT / "scripts" / "realk8s" / "build-control-plane.sh"
KUBERNETES_VERSION = "v1.20.2"
# Controllers that need a cloud, node IPAM, volumes or node health: none of that exists here.
CONTROLLERS = "*,-nodelifecycle,-nodeipam,-route,-service,-cloud-node-lifecycle,-attachdetach," \
              "-persistentvolume-binder,-persistentvolume-expander"  # fmt: skip
FEATURE_GATES = "TTLAfterFinished=true"  # ttlSecondsAfterFinished is dropped without it in 1.20
ADMIN_USER = "local-admin"
JOBS_USER = "customer-upgrades-jobs"
READER_USER = "customer-upgrades-reader"


def build_binaries() -> Path:
    """The directory holding kube-apiserver and kube-controller-manager (built now when not cached)."""
    if not BUILD_SCRIPT.is_file():
        raise StartError(f"build the control plane: {BUILD_SCRIPT} is missing")
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603, S607
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise StartError(f"build the control plane: {BUILD_SCRIPT.name} failed (exit {result.returncode}); "
                         "its last line above names the step and the fix")  # fmt: skip
    return Path(lines[-1])


def etcd_binary() -> str:
    found = shutil.which("etcd")
    if not found:
        raise StartError("start etcd: no etcd binary; install Debian's etcd-server (apt-get install etcd-server) "
                         "or run scripts/realk8s/build-control-plane.sh, which installs it")  # fmt: skip
    return found


class ControlPlane:
    """Start with `start()`, stop with `stop()` (every process it started, by PID)."""

    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.processes: list[Process] = []
        self.port = 0
        self.tokens: dict[str, str] = {}
        self.pki: Pki | None = None
        self.kubelet_client: tuple[Path, Path] | None = None
        self.api_tls: tuple[Path, Path] = (Path(), Path())  # (certificate, key) of kube-apiserver
        self.sa_keys: tuple[Path, Path] = (Path(), Path())  # (private, public) ServiceAccount token keys

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None
        return self.pki.ca_cert

    def token_file(self, user: str) -> Path:
        return self.directory / "tokens" / user

    def start(self) -> ControlPlane:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for binary in ("kube-apiserver", "kube-controller-manager"):
            if not (self.bin_dir / binary).is_file():
                raise StartError(f"start the control plane: {self.bin_dir / binary} is missing; run "
                                 f"scripts/realk8s/build-control-plane.sh")  # fmt: skip
        etcd = etcd_binary()
        logs = self.directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.pki = pki = Pki(self.directory / "pki")
        self.kubelet_client = pki.issue("kubelet-client", common_name="kube-apiserver-kubelet-client",
                                        organization="system:masters", server=False, client=True)  # fmt: skip
        self.api_tls = pki.issue("apiserver", common_name="kube-apiserver")
        self.sa_keys = pki.service_account_keys()
        sa_private = self.sa_keys[0]
        self._write_tokens()

        # Each on ports chosen free just before it starts, chosen again when one was taken meanwhile.
        client_port = on_free_ports(lambda: self._start_etcd(etcd, logs))
        on_free_ports(lambda: self._start_apiserver(client_port, logs))

        admin = self.write_kubeconfig("admin", ADMIN_USER)
        controllers = self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={admin}", "--bind-address=127.0.0.1", "--port=0", "--secure-port=0", "--leader-elect=false",
            f"--service-account-private-key-file={sa_private}", f"--root-ca-file={pki.ca_cert}",
            "--use-service-account-credentials=false", f"--controllers={CONTROLLERS}",
            f"--feature-gates={FEATURE_GATES}",
        ], logs)  # fmt: skip
        # Usable once the token controller gave the default namespace its ServiceAccount.
        wait_until("start kube-controller-manager", lambda: self._admin_get("/api/v1/namespaces/default/serviceaccounts/default"),
                   90, controllers, "see its log in " + str(controllers.log))  # fmt: skip

    def _start_etcd(self, etcd: str, logs: Path) -> int:
        """etcd on three ports chosen now, with an empty data directory; its client port."""
        client_port, peer_port, metrics_port = free_port(), free_port(), free_port()
        shutil.rmtree(self.directory / "etcd", ignore_errors=True)  # nothing of an attempt that lost its port
        etcd_proc = self._spawn("etcd", [
            etcd, "--name", "local", "--data-dir", str(self.directory / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"local=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls", f"http://127.0.0.1:{metrics_port}",
        ], logs)  # fmt: skip
        wait_until("start etcd", lambda: urllib.request.urlopen(f"http://127.0.0.1:{client_port}/health", timeout=2)  # noqa: S310
                   .status == 200, 60, etcd_proc, "see its log in " + str(etcd_proc.log))  # fmt: skip
        return client_port

    def _start_apiserver(self, client_port: int, logs: Path) -> None:
        """kube-apiserver on a secure port chosen now (self.port), ready."""
        assert self.pki is not None
        assert self.kubelet_client is not None
        pki = self.pki
        (api_cert, api_key), (sa_private, sa_public) = self.api_tls, self.sa_keys
        self.port = free_port()
        apiserver = self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{client_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}", "--insecure-port=0",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={api_cert}", f"--tls-private-key-file={api_key}", f"--client-ca-file={pki.ca_cert}",
            f"--token-auth-file={self.directory / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc", "--api-audiences=https://kubernetes.default.svc",
            f"--service-account-key-file={sa_public}", f"--service-account-signing-key-file={sa_private}",
            "--service-cluster-ip-range=10.96.0.0/16",
            f"--kubelet-client-certificate={self.kubelet_client[0]}", f"--kubelet-client-key={self.kubelet_client[1]}",
            f"--kubelet-certificate-authority={pki.ca_cert}", "--kubelet-preferred-address-types=InternalIP",
            f"--feature-gates={FEATURE_GATES}",
            "--profiling=false",
        ], logs)  # fmt: skip
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
        wait_until("start kube-apiserver", lambda: urllib.request.urlopen(f"{self.url}/readyz", timeout=3, context=context)  # noqa: S310
                   .status == 200, 120, apiserver, "see its log in " + str(apiserver.log))  # fmt: skip

    def _spawn(self, name: str, argv: list[str], logs: Path) -> Process:
        process = Process(name, argv, logs / f"{name}.log")
        self.processes.append(process)
        return process

    def _write_tokens(self) -> None:
        """The static token file (token,user,uid,"groups") and one file per token for its users."""
        (self.directory / "tokens").mkdir(mode=0o700, exist_ok=True)
        rows = []
        for user, group in ((ADMIN_USER, "system:masters"), (JOBS_USER, JOBS_KUBERNETES_GROUP),
                            (READER_USER, READER_KUBERNETES_GROUP)):  # fmt: skip
            token = secrets.token_hex(24)
            self.tokens[user] = token
            path = self.token_file(user)
            path.write_text(token, encoding="utf-8")
            path.chmod(0o600)
            rows.append(f'{token},{user},{user},"{group}"')
        csv = self.directory / "tokens.csv"
        csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
        csv.chmod(0o600)

    def write_kubeconfig(self, name: str, user: str, token: str | None = None) -> Path:
        """A kubeconfig for `user` (its static token, or `token`) at <dir>/<name>.kubeconfig."""
        import yaml

        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": name,
            "clusters": [{"name": "local-real", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token or self.tokens[user]}}],
            "contexts": [{"name": name, "context": {"cluster": "local-real", "user": user}}],
        }  # fmt: skip
        path = self.directory / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)
        return path

    def _admin_get(self, path: str) -> bool:
        headers = {"Authorization": f"Bearer {self.tokens[ADMIN_USER]}"}
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - https, our own URL
        context = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(request, timeout=3, context=context) as response:  # noqa: S310
            return bool(response.status == 200)

    def stop(self) -> None:
        """Every process started here, newest first, by PID."""
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
