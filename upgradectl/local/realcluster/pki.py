"""A private CA and the certificates of the real control plane, made with openssl (argv lists only)."""

from __future__ import annotations

import subprocess
from pathlib import Path


class PkiError(RuntimeError):
    """openssl failed; the message names the step."""


def _openssl(step: str, *args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)  # noqa: S603, S607
    if result.returncode != 0:
        raise PkiError(f"openssl ({step}) failed: {result.stderr.strip()[-400:]}")


class Pki:
    """Files under `directory`: ca.crt/ca.key and one key + certificate per name, all for 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        _openssl("CA key", "genrsa", "-out", str(self.ca_key), "2048")
        _openssl("CA certificate", "req", "-x509", "-new", "-key", str(self.ca_key), "-sha256", "-days", "30",
                 "-subj", "/CN=customer-upgrades-local-ca", "-out", str(self.ca_cert))  # fmt: skip

    def issue(self, name: str, *, common_name: str, organization: str | None = None,
              server: bool = True, client: bool = False) -> tuple[Path, Path]:  # fmt: skip
        """(certificate, key) signed by the CA; a server certificate names 127.0.0.1 and localhost."""
        key = self.directory / f"{name}.key"
        csr = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.crt"
        ext = self.directory / f"{name}.ext"
        usages = ",".join(u for u, on in (("serverAuth", server), ("clientAuth", client)) if on)
        lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment", f"extendedKeyUsage={usages}"]
        if server:
            lines.append("subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc")
        ext.write_text("\n".join(lines) + "\n", encoding="utf-8")
        subject = f"/CN={common_name}" + (f"/O={organization}" if organization else "")
        _openssl(f"{name} key", "genrsa", "-out", str(key), "2048")
        _openssl(f"{name} request", "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
        _openssl(f"{name} certificate", "x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey",
                 str(self.ca_key), "-CAcreateserial", "-days", "30", "-sha256", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
        return cert, key

    def service_account_keys(self) -> tuple[Path, Path]:
        """(private key, public key) that sign and verify ServiceAccount tokens."""
        private = self.directory / "sa.key"
        public = self.directory / "sa.pub"
        _openssl("service-account key", "genrsa", "-out", str(private), "2048")
        _openssl("service-account public key", "rsa", "-in", str(private), "-pubout", "-out", str(public))
        return private, public
