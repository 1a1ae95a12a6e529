"""rke2's server flag rules for the twin's rke2 shim, each citing the rke2 source. Test-only; pure.

Follows github:rancher/rke2 at 6ce1a8019e9d0b81eb7a715edbc2b8ac12d26da0 (docs/CONFORMANCE.md "rke2"):
- pkg/cli/cmds/server.go ``k3sServerBase``: `rke2 server` is k3s's server command with RKE2's flag
  table: ``copyFlag`` keeps a k3s flag, ``dropFlag`` removes it (then it is "flag provided but not
  defined" on the command line, and skipped with "Unknown flag" in config.yaml, as k3s's
  configfilearg strips flags the command does not define); ``data-dir`` defaults to
  /var/lib/rancher/rke2.
- pkg/cli/defaults/defaults.go: the supervisor port is 9345, not settable (``supervisor-port`` is
  dropped): a server joins through ``--server https://<address>:9345``.
- main.go + scripts/build-binary: k3s's configfilearg with ``version.Program=rke2``, so the config
  file is /etc/rancher/rke2/config.yaml ($RKE2_CONFIG_FILE, --config) with config.yaml.d drop-ins,
  and the token comes from --token/--token-file or RKE2_TOKEN/RKE2_TOKEN_FILE (k3s's flag EnvVars
  are ``version.ProgramUpper + "_TOKEN"``).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

CONFIG = Path("/etc/rancher/rke2/config.yaml")
DATA_DIR = "/var/lib/rancher/rke2"
SUPERVISOR_PORT = 9345
# The server.go table entries the twin knows (copied from k3s, or RKE2's own): value, list, bool.
VALUE_FLAGS = {"config", "data-dir", "server", "token", "token-file", "node-name", "node-ip", "cluster-cidr",
               "service-cidr", "cluster-dns", "cluster-domain", "write-kubeconfig-mode", "egress-selector-mode",
               "secrets-encryption-provider", "cluster-reset-restore-path", "profile"}
LIST_FLAGS = {"tls-san", "disable", "node-label", "node-taint", "kube-apiserver-arg", "kube-scheduler-arg",
              "kube-controller-manager-arg", "kubelet-arg", "kube-proxy-arg", "etcd-arg", "cni"}
BOOL_FLAGS = {"cluster-reset", "disable-kube-proxy", "disable-cloud-controller", "embedded-registry",
              "supervisor-metrics", "enable-servicelb"}
# dropFlag entries of server.go: k3s flags `rke2 server` does not define
DROPPED = {"https-listen-port", "supervisor-port", "apiserver-port", "apiserver-bind-address", "advertise-port",
           "cluster-init", "flannel-backend", "vpn-auth", "vpn-auth-file", "kine-tls", "default-local-storage-path",
           "disable-network-policy", "docker", "image-service-endpoint", "pause-image", "flannel-iface",
           "flannel-conf", "flannel-cni-conf", "flannel-ipv6-masq", "flannel-external-ip", "rootless",
           "prefer-bundled-bin", "disable-helm-controller", "kube-controller-arg", "kube-cloud-controller-arg"}
SHORT = {"d": "data-dir", "s": "server", "t": "token", "c": "config", "i": "node-ip"}


class Rke2Error(Exception):
    pass


def _known(name: str) -> bool:
    return name not in DROPPED and (name in VALUE_FLAGS or name in LIST_FLAGS or name in BOOL_FLAGS)


def config_args(path: Path, *, explicit: bool) -> tuple[list[str], list[str]]:
    """config.yaml then config.yaml.d/*.yaml|yml (a later key replaces, ``key+`` appends), as flags
    before the CLI's; keys `rke2 server` does not define are skipped with configfilearg's warning."""
    drop_dir = Path(f"{path}.d")
    drop_ins = sorted(p for p in drop_dir.iterdir() if p.suffix.lower() in (".yaml", ".yml")) \
        if drop_dir.is_dir() else []
    if not path.exists() and not drop_ins:
        if explicit:
            raise Rke2Error(f"open {path}: no such file or directory")
        return [], []
    values: dict[str, object] = {}
    for file in ([path] if path.exists() else []) + drop_ins:
        data = yaml.safe_load(file.read_text()) or {}
        if not isinstance(data, dict):
            raise Rke2Error(f"{file}: config is not a mapping")
        for raw_key, value in data.items():
            append, key = str(raw_key).endswith("+"), str(raw_key).rstrip("+")
            if append and key in values:
                old = values[key] if isinstance(values[key], list) else [values[key]]
                values[key] = old + (value if isinstance(value, list) else [value])
            else:
                values[key] = value
    args, warnings = [], []
    for key, value in values.items():
        if not _known(key):
            warnings.append(f"Unknown flag --{key} found in config.yaml, skipping")
            continue
        for item in (value if isinstance(value, list) else [value]):
            args.append(f"--{key}={str(item).lower() if isinstance(item, bool) else item}")
    return args, warnings


def parse(argv: list[str]) -> dict:
    """urfave/cli: `--flag value`, `--flag=value`, booleans bare or `=true|false`; a dropped or unknown
    flag is "Incorrect Usage: flag provided but not defined"."""
    flags: dict = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            raise Rke2Error(f"Incorrect Usage: unexpected argument {arg!r}")
        name, has_value, value = arg.lstrip("-").partition("=")
        name = SHORT.get(name, name)
        if not _known(name):
            raise Rke2Error(f"Incorrect Usage: flag provided but not defined: -{name}")
        if name in BOOL_FLAGS:
            flags[name] = (value.lower() == "true") if has_value else True
            continue
        if not has_value:
            if not rest:
                raise Rke2Error(f"Incorrect Usage: flag needs an argument: -{name}")
            value = rest.pop(0)
        if name in LIST_FLAGS:
            flags.setdefault(name, []).extend(v for v in value.split(",") if v)
        else:
            flags[name] = value
    return flags


def server_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """Config file flags first, then the command line's (configfilearg.MustParse)."""
    cli = parse(argv)
    path = Path(cli.get("config", os.environ.get("RKE2_CONFIG_FILE", str(CONFIG))))
    file_args, warnings = config_args(path, explicit="config" in cli)
    merged = parse(file_args)
    for key, value in cli.items():
        merged[key] = merged.get(key, []) + value if key in LIST_FLAGS else value
    return merged, warnings


def token(flags: dict) -> str | None:
    """--token-file (RKE2_TOKEN_FILE) wins over --token (RKE2_TOKEN); the file's content is trimmed."""
    path = flags.get("token-file") or os.environ.get("RKE2_TOKEN_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise Rke2Error(f"failed to read token file {path}: {exc}") from exc
    return flags.get("token") or os.environ.get("RKE2_TOKEN")
