"""Test PKI: a CA and certificates with IP/DNS SANs, made with the openssl CLI. Test-only."""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CA:
    cert: Path
    key: Path


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def make_ca(*, directory: Path, name: str = "cpswap-test-ca") -> CA:
    directory.mkdir(parents=True, exist_ok=True)
    ca = CA(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
    _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(ca.key), "-out", str(ca.cert), "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return ca


def make_cert(*, ca: CA, directory: Path, name: str, sans: list[str]) -> tuple[Path, Path]:
    """A serverAuth+clientAuth certificate signed by ``ca`` (IP SANs for addresses, DNS otherwise)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, cert, ext = (directory / f"{name}.{s}" for s in ("key", "csr", "crt", "ext"))
    san = ",".join(f"IP:{s}" if s.replace(".", "").isdigit() or ":" in s else f"DNS:{s}" for s in sans)
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n"
                   "keyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE\n")
    _run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
         "-out", str(csr), "-subj", f"/CN={name}")
    _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
         "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key
