"""k3s's server flag rules for the twin's k3s shim, each citing the k3s source. Test-only; pure.

Follows github:k3s-io/k3s (docs/CONFORMANCE.md "k3s"):
- pkg/configfilearg/parser.go (f646604010affc6a1d3233a8a0870bca46bf80cf): /etc/rancher/k3s/config.yaml
  ($K3S_CONFIG_FILE, --config), then config.yaml.d/*.yaml: a later file's key replaces the earlier
  one (``key+`` appends); the result becomes flags before the CLI's; a key that is not a `k3s
  server` flag is skipped with "Unknown flag --X found in config.yaml, skipping"; list values
  repeat the flag.
- urfave/cli: an unknown CLI flag is "Incorrect Usage: flag provided but not defined: -X".
- pkg/cli/server/server.go: --token-file (K3S_TOKEN_FILE) replaces --token with the file's content.
- pkg/daemons/config/types.go CriticalControlArgs and pkg/cluster/bootstrap.go compareConfig: a
  joining server fetches /v1-k3s/config from --server and refuses to start on any difference:
  "failed to validate server configuration: critical configuration value mismatch".
"""
from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import yaml

# `k3s server` flags the twin knows (value flags; `None` marks booleans); lists may repeat.
VALUE_FLAGS = {"data-dir", "server", "token", "token-file", "node-name", "node-ip", "config", "cluster-cidr",
               "service-cidr", "cluster-dns", "cluster-domain", "flannel-backend", "egress-selector-mode",
               "secrets-encryption-provider", "pause-image", "default-local-storage-path", "write-kubeconfig-mode"}
LIST_FLAGS = {"tls-san", "disable", "node-label", "node-taint", "kube-apiserver-arg", "kube-controller-manager-arg",
              "kube-scheduler-arg", "kubelet-arg", "kube-proxy-arg", "etcd-arg"}
BOOL_FLAGS = {"disable-network-policy", "disable-cloud-controller", "disable-helm-controller", "secrets-encryption",
              "flannel-ipv6-masq", "flannel-external-ip", "embedded-registry", "supervisor-metrics", "cluster-init",
              "disable-kube-proxy"}
SHORT = {"d": "data-dir", "s": "server", "t": "token", "c": "config", "i": "node-ip"}
CRITICAL = ("cluster-cidr", "service-cidr", "cluster-dns", "cluster-domain", "flannel-backend",
            "disable-network-policy", "disable-cloud-controller", "disable-helm-controller", "secrets-encryption",
            "secrets-encryption-provider", "embedded-registry", "flannel-ipv6-masq", "flannel-external-ip",
            "egress-selector-mode", "supervisor-metrics", "disable-service-lb")
CONFIG = Path("/etc/rancher/k3s/config.yaml")


class K3sError(Exception):
    pass


def _known(name: str) -> bool:
    return name in VALUE_FLAGS or name in LIST_FLAGS or name in BOOL_FLAGS


def config_args(path: Path, *, explicit: bool) -> tuple[list[str], list[str]]:
    """Flags from the config file and its .d drop-ins (pkg/configfilearg/parser.go readConfigFile:
    a later file's key replaces the earlier value, ``key+`` appends; keys in first-seen order;
    lists become one ``--key=item`` each), and the warnings for keys that are not flags."""
    drop_ins = sorted(p for p in Path(f"{path}.d").iterdir()
                      if p.is_file() and p.suffix.lower() in (".yaml", ".yml")) if Path(f"{path}.d").is_dir() else []
    if not path.exists() and not drop_ins:
        if explicit:
            raise K3sError(f"open {path}: no such file or directory")
        return [], []
    values: dict[str, object] = {}
    for file in ([path] if path.exists() else []) + drop_ins:
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise K3sError(f"{file}: config is not a mapping")
        for raw_key, value in data.items():
            key = str(raw_key)
            append, key = key.endswith("+"), key.rstrip("+")
            if append and key in values:
                old = values[key] if isinstance(values[key], list) else [values[key]]
                values[key] = old + (value if isinstance(value, list) else [value])
            else:
                values[key] = value
    args, warnings = [], []
    for key, value in values.items():
        if not _known(key):  # parser.go stripInvalidFlags
            warnings.append(f"Unknown flag --{key} found in config.yaml, skipping")
            continue
        for item in (value if isinstance(value, list) else [value]):
            text = str(item).lower() if isinstance(item, bool) else str(item)
            args.append(f"--{key}={text}")
    return args, warnings


def parse(argv: list[str]) -> dict:
    """CLI flags (urfave/cli): `--flag value`, `--flag=value`, booleans bare or `=true|false`."""
    flags: dict = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            raise K3sError(f"Incorrect Usage: unexpected argument {arg!r}")
        name, has_value, value = arg.lstrip("-").partition("=")
        name = SHORT.get(name, name)
        if not _known(name):
            raise K3sError(f"Incorrect Usage: flag provided but not defined: -{name}")
        if name in BOOL_FLAGS:
            flags[name] = (value.lower() == "true") if has_value else True
            continue
        if not has_value:
            if not rest:
                raise K3sError(f"Incorrect Usage: flag needs an argument: -{name}")
            value = rest.pop(0)
        if name in LIST_FLAGS:
            flags.setdefault(name, []).extend(v for v in value.split(",") if v)
        else:
            flags[name] = value
    return flags


def server_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """Config file flags first, then the CLI's (configfilearg.MustParse), as one flag set."""
    cli = parse(argv)
    path = Path(cli.get("config", os.environ.get("K3S_CONFIG_FILE", str(CONFIG))))
    file_args, warnings = config_args(path, explicit="config" in cli)
    merged = parse(file_args)
    for key, value in cli.items():
        if key in LIST_FLAGS:
            merged[key] = merged.get(key, []) + value
        else:
            merged[key] = value
    return merged, warnings


def token(flags: dict) -> str | None:
    """pkg/cli/server/server.go: TokenFile wins over Token (token.ReadFile trims whitespace)."""
    path = flags.get("token-file") or os.environ.get("K3S_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise K3sError(f"failed to read token file {path}: {exc}") from exc
    return flags.get("token") or os.environ.get("K3S_TOKEN")


def critical(flags: dict) -> dict:
    """The CriticalControlArgs a server with these flags runs with (k3s defaults filled in:
    pkg/cli/cmds/server.go defaults, cluster-dns = service-cidr's 10th address)."""
    service = flags.get("service-cidr", "10.43.0.0/16")
    first = next(iter(service.split(",")))
    dns = flags.get("cluster-dns") or str(ipaddress.ip_network(first, strict=False).network_address + 10)
    return {
        "cluster-cidr": flags.get("cluster-cidr", "10.42.0.0/16"), "service-cidr": service, "cluster-dns": dns,
        "cluster-domain": flags.get("cluster-domain", "cluster.local"),
        "flannel-backend": flags.get("flannel-backend", "vxlan"),
        "disable-network-policy": bool(flags.get("disable-network-policy", False)),
        "disable-cloud-controller": bool(flags.get("disable-cloud-controller", False)),
        "disable-helm-controller": bool(flags.get("disable-helm-controller", False)),
        "secrets-encryption": bool(flags.get("secrets-encryption", False)),
        "secrets-encryption-provider": flags.get("secrets-encryption-provider", "aescbc"),
        "embedded-registry": bool(flags.get("embedded-registry", False)),
        "flannel-ipv6-masq": bool(flags.get("flannel-ipv6-masq", False)),
        "flannel-external-ip": bool(flags.get("flannel-external-ip", False)),
        "egress-selector-mode": flags.get("egress-selector-mode", "agent"),
        "supervisor-metrics": bool(flags.get("supervisor-metrics", False)),
        "disable-service-lb": "servicelb" in (flags.get("disable") or []),
    }


def mismatch(joining: dict, cluster: dict) -> list[str]:
    return [k for k in CRITICAL if joining.get(k) != cluster.get(k)]
