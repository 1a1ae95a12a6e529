"""k3s's server flag rules for the twin's k3s shim, each citing the k3s source. Test-only; pure.

Follows github:k3s-io/k3s (docs/CONFORMANCE.md "k3s"):
- pkg/configfilearg/parser.go (f646604010affc6a1d3233a8a0870bca46bf80cf): /etc/rancher/k3s/config.yaml
  ($K3S_CONFIG_FILE, --config), then config.yaml.d/*.yaml: a later file's key replaces the earlier
  one (``key+`` appends); the result becomes flags before the CLI's; a key that is not a `k3s
  server` flag is skipped with "Unknown flag --X found in config.yaml, skipping"; list values
  repeat the flag.
- urfave/cli: an unknown CLI flag is "Incorrect Usage: flag provided but not defined: -X".
- pkg/cli/server/server.go: --token-file (K3S_TOKEN_FILE) replaces --token with the file's content.
- pkg/daemons/config/types.go (005499a940eafe99977bcabd6991a888a4cb6642) ``CriticalControlArgs``
  and pkg/cluster/bootstrap.go ``compareConfig`` (the stored version with ``deep.Equal``; the index
  names no commit for it): a joining server reads ``/v1-k3s/config`` from --server as user
  ``node`` (pkg/clientaccess/token.go at 0566d4571ef8e44fdc87aee1ddf42667256f5e84: CA bundle from
  ``/cacerts``, checked against the token's CA hash when it has one), decodes the
  ``config.Control`` JSON and compares the critical fields; each differing one is logged
  "critical configuration mismatched: <cli tag>", then it stops with "failed to validate server
  configuration: critical configuration value mismatch between servers". A server that did not
  fill ``EgressSelectorMode`` (down-level) takes the joining server's. When the config cannot be
  read the join goes on ("Skipping cluster configuration validation: <error>").
- The values compared are what each server computed from its flags (pkg/cli/server/server.go at
  005499a): cluster-cidr 10.42.0.0/16 and service-cidr 10.43.0.0/16 by default (comma lists),
  cluster-dns the 10th address of every service CIDR unless set, cluster-domain cluster.local,
  flannel-backend vxlan, egress-selector-mode agent; booleans false by default.
  ``CriticalControlArgs.DisableServiceLB`` is never set (``Control``'s own field of that name
  shadows it for ``ControlConfig.DisableServiceLB = true`` and in JSON), so ``disable: servicelb``
  is not compared; neither are ``secrets-encryption-provider`` or ``supervisor-metrics`` (fields of
  newer k3s versions than the twin's).
"""
from __future__ import annotations

import base64
import ipaddress
import json
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
# CriticalControlArgs at 005499a: (Go field, cli tag), compared in this order
CRITICAL_FIELDS = (
    ("ClusterDNSs", "cluster-dns"), ("ClusterIPRanges", "cluster-cidr"), ("ClusterDNS", "cluster-dns"),
    ("ClusterDomain", "cluster-domain"), ("ClusterIPRange", "cluster-cidr"), ("DisableCCM", "disable-cloud-controller"),
    ("DisableHelmController", "disable-helm-controller"), ("DisableNPC", "disable-network-policy"),
    ("DisableServiceLB", "disable-service-lb"), ("EncryptSecrets", "secrets-encryption"),
    ("EmbeddedRegistry", "embedded-registry"), ("FlannelBackend", "flannel-backend"),
    ("FlannelIPv6Masq", "flannel-ipv6-masq"), ("FlannelExternalIP", "flannel-external-ip"),
    ("EgressSelectorMode", "egress-selector-mode"), ("ServiceIPRange", "service-cidr"),
    ("ServiceIPRanges", "service-cidr"),
)
SWITCH_FIELDS = {"DisableCCM": "disable-cloud-controller", "DisableHelmController": "disable-helm-controller",
                 "DisableNPC": "disable-network-policy", "EncryptSecrets": "secrets-encryption",
                 "EmbeddedRegistry": "embedded-registry", "FlannelIPv6Masq": "flannel-ipv6-masq",
                 "FlannelExternalIP": "flannel-external-ip"}
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


def _split(values: object) -> list[str]:
    """util.SplitStringSlice: every value split on commas, trimmed."""
    items = values if isinstance(values, list) else [values] if values else []
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]


def _go_net(cidr: str) -> dict:
    """Go's JSON of the *net.IPNet net.ParseCIDR returns: the masked address and the mask bytes."""
    network = ipaddress.ip_network(cidr, strict=False)
    return {"IP": str(network.network_address), "Mask": base64.b64encode(network.netmask.packed).decode()}


def control(flags: dict) -> dict:
    """The ``config.Control`` JSON a server started with ``flags`` answers on /v1-k3s/config
    (pkg/cli/server/server.go: defaults and derived values; the critical part and ``Disables``)."""
    clusters = [_go_net(c) for c in _split(flags.get("cluster-cidr")) or ["10.42.0.0/16"]]
    services_cidrs = _split(flags.get("service-cidr")) or ["10.43.0.0/16"]
    services = [_go_net(c) for c in services_cidrs]
    dns = _split(flags.get("cluster-dns")) or [
        str(ipaddress.ip_network(c, strict=False).network_address + 10) for c in services_cidrs]
    disables = {name: True for name in _split(flags.get("disable"))}
    doc = {"ClusterDNSs": dns, "ClusterIPRanges": clusters, "ClusterDNS": dns[0],
           "ClusterDomain": flags.get("cluster-domain", "cluster.local"), "ClusterIPRange": clusters[0],
           **{field: bool(flags.get(flag, False)) for field, flag in SWITCH_FIELDS.items()},
           "FlannelBackend": flags.get("flannel-backend", "vxlan"),
           "EgressSelectorMode": flags.get("egress-selector-mode", "agent"),
           "ServiceIPRange": services[0], "ServiceIPRanges": services,
           # Control's own fields (DisableServiceLB shadows CriticalControlArgs.DisableServiceLB)
           "HTTPSPort": 6443, "SupervisorPort": 6443, "Disables": disables, "Skips": dict(disables),
           "DisableServiceLB": "servicelb" in disables}
    return doc


def _decode(doc: dict) -> dict:
    """The CriticalControlArgs Go decodes from ``doc`` (absent fields: zero values; CIDRs and IPs
    compared as values). The embedded DisableServiceLB is never in the JSON: always false."""
    def nets(value):
        items = value if isinstance(value, list) else [value] if value else []
        return tuple(str(ipaddress.ip_network(
            f"{i['IP']}/{bin(int.from_bytes(base64.b64decode(i['Mask']), 'big')).count('1')}", strict=False))
            for i in items)

    def ips(value):
        items = value if isinstance(value, list) else [value] if value else []
        return tuple(str(ipaddress.ip_address(i)) for i in items)

    out = {"ClusterDNSs": ips(doc.get("ClusterDNSs")), "ClusterIPRanges": nets(doc.get("ClusterIPRanges")),
           "ClusterDNS": ips(doc.get("ClusterDNS")), "ClusterDomain": doc.get("ClusterDomain", ""),
           "ClusterIPRange": nets(doc.get("ClusterIPRange")), "DisableServiceLB": False,
           "FlannelBackend": doc.get("FlannelBackend", ""), "EgressSelectorMode": doc.get("EgressSelectorMode", ""),
           "ServiceIPRange": nets(doc.get("ServiceIPRange")), "ServiceIPRanges": nets(doc.get("ServiceIPRanges"))}
    out.update({field: bool(doc.get(field, False)) for field in SWITCH_FIELDS})
    return out


def mismatch(joining_flags: dict, cluster: dict) -> list[str]:
    """compareConfig: the cli tag of every critical field that differs, in field order (a tag once)."""
    local, remote = _decode(control(joining_flags)), _decode(cluster)
    if not remote["EgressSelectorMode"]:  # a down-level server: the local value is used
        remote["EgressSelectorMode"] = local["EgressSelectorMode"]
    tags = [tag for field, tag in CRITICAL_FIELDS if local[field] != remote[field]]
    return list(dict.fromkeys(tags))


def password(token: str) -> str:
    """The password part of a join token (pkg/clientaccess/token.go parseToken): a bare password,
    or ``K10<hash>::<user>:<password>``."""
    if token.startswith("K10") and "::" in token:
        return token.split("::", 1)[1].partition(":")[2]
    return token


def read_cluster_config(server: str, token: str, *, timeout_s: float = 10.0) -> dict:
    """``GET <server>/v1-k3s/config`` as compareConfig does: the CA bundle from /cacerts (fetched
    unverified, then used to verify the server), the token's CA hash checked when it has one, basic
    auth ``node:<password>``. Raises OSError/ValueError with the reason."""
    import hashlib
    import ssl
    import urllib.request

    insecure = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(f"{server}/cacerts", context=insecure, timeout=timeout_s) as answer:
        cacerts = answer.read()
    if token.startswith("K10") and token[3:].partition("::")[0]:
        wanted, served = token[3:].partition("::")[0], hashlib.sha256(cacerts).hexdigest()
        if wanted != served:
            raise ValueError(f"token CA hash does not match the Cluster CA certificate hash: {wanted} != {served}")
    verified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    verified.load_verify_locations(cadata=cacerts.decode())
    request = urllib.request.Request(f"{server}/v1-k3s/config", headers={
        "Authorization": "Basic " + base64.b64encode(f"node:{password(token)}".encode()).decode()})
    with urllib.request.urlopen(request, context=verified, timeout=timeout_s) as answer:
        return json.loads(answer.read())
