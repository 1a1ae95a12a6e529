"""The cluster-critical k3s server flags: read from a survivor, copied into the join's config.yaml. Pure.

A joining k3s server refuses to start when its critical configuration differs from the cluster's
(k3s-io/k3s ``pkg/cluster/bootstrap.go`` ``compareConfig``: "failed to validate server
configuration: critical configuration value mismatch between servers"). It learns the cluster's
by ``GET /v1-k3s/config`` on ``--server`` with the join token as user ``node``
(``clientaccess.ParseAndValidateToken(..., WithUser("node"))``), which answers the server's
``config.Control`` as JSON (``pkg/server/handlers/handlers.go`` ``Config``); the embedded
``CriticalControlArgs`` (``pkg/daemons/config/types.go``) are compared field by field. cpswap's
preflight reads the same document the same way before anything is removed, and the join writes
the values here derived into its config.yaml, so the new server starts with the survivors' values.

Go's JSON encoding of the fields: ``net.IP`` as its text, ``*net.IPNet`` as ``{"IP": text, "Mask":
base64 bytes}``, bools and strings as such; a field the server's version lacks is absent (decoded
as its zero value). ``Token``/``AgentToken`` are ``json:"-"``: no secret is in the document.

- ``parse_control(text)`` -> ``CriticalConfig``, or ``ShapeError`` naming the field when the
  document is not a k3s server's config (what cannot be known stops the preflight).
- ``render_critical_block(config, source)`` -> the config.yaml lines, between markers the join
  finds in the preflight's output (``BEGIN``/``END``).
- ``parse_join_token(token)``: ``pkg/clientaccess/token.go`` ``parseToken`` (bare password,
  ``K10<ca-hash>::user:password`` or a bootstrap token ``abcdef.0123456789abcdef``).

Not compared by k3s although listed in ``CriticalControlArgs``: ``DisableServiceLB``. ``Control``
also has its own ``DisableServiceLB``, which shadows the embedded one for ``serverConfig.
ControlConfig.DisableServiceLB = true`` (``pkg/cli/server/server.go``) and for JSON, so the
embedded field is false on both sides. ``disable`` (``Control.Disables``) is copied all the same:
the packaged components each server deploys should agree.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from dataclasses import dataclass

BEGIN = "# cpswap: cluster-critical k3s server flags, read from"
END = "# cpswap: end of the cluster-critical k3s server flags"
CONFIG_PATH = "/v1-k3s/config"

# CriticalControlArgs booleans (Go field -> k3s server flag, the field's `cli` tag). Absent in a
# down-level server's document: not written (k3s decodes it as false, the flag's default).
SWITCHES = (
    ("DisableNPC", "disable-network-policy"),
    ("DisableCCM", "disable-cloud-controller"),
    ("DisableHelmController", "disable-helm-controller"),
    ("EncryptSecrets", "secrets-encryption"),
    ("EmbeddedRegistry", "embedded-registry"),
    ("FlannelIPv6Masq", "flannel-ipv6-masq"),
    ("FlannelExternalIP", "flannel-external-ip"),
    ("FlannelIPMasqDisableRandomFully", "flannel-ip-masq-disable-random-fully"),
    ("SupervisorMetrics", "supervisor-metrics"),
)
TOKEN_PREFIX = "K10"
CA_HASH_LENGTH = 64  # sha256, hex
BOOTSTRAP_TOKEN = re.compile(r"^([a-z0-9]{6})\.([a-z0-9]{16})$")  # k8s.io/cluster-bootstrap BootstrapTokenPattern


class ShapeError(ValueError):
    """The document is not a k3s server's config; the message names the field and the rule."""


@dataclass(frozen=True)
class CriticalConfig:
    cluster_cidr: tuple[str, ...]
    service_cidr: tuple[str, ...]
    cluster_dns: tuple[str, ...]
    cluster_domain: str
    flannel_backend: str
    egress_selector_mode: str = ""  # "": a down-level server; k3s then takes the joining server's own
    secrets_encryption_provider: str = ""  # "": the server's version has no such flag
    switches: tuple[tuple[str, bool], ...] = ()  # (flag, value) of the booleans the document has
    disable: tuple[str, ...] = ()


@dataclass(frozen=True)
class CriticalRead:
    """What reading ``url`` gave: the config, or the reason it could not be known."""

    url: str
    config: CriticalConfig | None
    error: str | None = None
    ca_pinned: bool = False  # the token's CA hash matched the served cluster CA


@dataclass(frozen=True)
class JoinToken:
    """A parsed k3s join token. ``bootstrap``: a kubeadm-style token sent as a bearer token."""

    ca_hash: str
    username: str
    password: str
    bootstrap: bool = False

    def as_user(self, username: str) -> JoinToken:
        """``clientaccess.WithUser``: the username replaced (a bootstrap token has none)."""
        return self if self.bootstrap else JoinToken(self.ca_hash, username, self.password)


def parse_join_token(token: str) -> JoinToken:
    """``pkg/clientaccess/token.go`` ``parseToken``. Errors never contain the token."""
    if not token:
        raise ShapeError("token must not be empty")
    if not token.startswith(TOKEN_PREFIX):
        token = TOKEN_PREFIX + ("::" if BOOTSTRAP_TOKEN.match(token) else ":::") + token
    token = token[len(TOKEN_PREFIX):]
    ca_hash, separator, creds = token.partition("::")
    if not separator:
        ca_hash, creds = "", ca_hash
    if ca_hash and len(ca_hash) != CA_HASH_LENGTH:
        raise ShapeError("invalid token CA hash length")
    if BOOTSTRAP_TOKEN.match(creds):
        return JoinToken(ca_hash=ca_hash, username="", password=creds, bootstrap=True)
    username, colon, password = creds.partition(":")
    if not colon or not password:
        raise ShapeError("invalid token format")
    return JoinToken(ca_hash=ca_hash, username=username, password=password)


def _ip_net(value: object, *, field: str) -> str:
    """Go's ``*net.IPNet`` JSON: ``{"IP": "10.42.0.0", "Mask": "//8AAA=="}`` -> ``10.42.0.0/16``."""
    if not isinstance(value, dict) or not isinstance(value.get("IP"), str) or not isinstance(value.get("Mask"), str):
        raise ShapeError(f"{field}: {value!r} is not a Go net.IPNet ({{\"IP\": text, \"Mask\": base64}})")
    try:
        ip = ipaddress.ip_address(value["IP"])
        mask = base64.b64decode(value["Mask"], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise ShapeError(f"{field}: {value!r}: {exc}") from exc
    bits = "".join(f"{byte:08b}" for byte in mask)
    prefix = len(bits.rstrip("0"))
    if len(mask) != ip.max_prefixlen // 8 or "0" in bits[:prefix]:
        raise ShapeError(f"{field}: mask {value['Mask']!r} is not a contiguous IPv{ip.version} prefix mask")
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def _nets(doc: dict[str, object], plural: str, single: str) -> tuple[str, ...]:
    """The list field (dual-stack k3s), else the single one (older k3s); one of them must be set."""
    items = doc.get(plural)
    if isinstance(items, list) and items:
        return tuple(_ip_net(item, field=f"{plural}[{i}]") for i, item in enumerate(items))
    if doc.get(single) is not None:
        return (_ip_net(doc[single], field=single),)
    raise ShapeError(f"{plural}/{single}: missing; a k3s server always has them (pkg/cli/server/server.go)")


def _ips(doc: dict[str, object]) -> tuple[str, ...]:
    items = doc.get("ClusterDNSs")
    values = items if isinstance(items, list) and items else [doc.get("ClusterDNS")]
    out = []
    for i, item in enumerate(values):
        try:
            out.append(str(ipaddress.ip_address(item if isinstance(item, str) else "")))
        except ValueError:
            raise ShapeError(f"ClusterDNSs[{i}]/ClusterDNS: {item!r} is not an IP address") from None
    return tuple(out)


def _string(doc: dict[str, object], field: str, *, required: bool) -> str:
    value = doc.get(field, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise ShapeError(f"{field}: {value!r} is not a non-empty string" if required
                         else f"{field}: {value!r} is not a string")
    return value


def parse_control(text: str) -> CriticalConfig:
    """The critical flags of a ``/v1-k3s/config`` answer (a ``config.Control`` as JSON)."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ShapeError(f"not JSON: {str(exc)[:80]}") from exc
    if not isinstance(doc, dict):
        raise ShapeError(f"not a JSON object but {type(doc).__name__}")
    switches = []
    for field, flag in SWITCHES:
        if field in doc:
            if not isinstance(doc[field], bool):
                raise ShapeError(f"{field}: {doc[field]!r} is not a boolean")
            switches.append((flag, doc[field]))
    disables = doc.get("Disables") or {}
    if not isinstance(disables, dict) or not all(isinstance(v, bool) for v in disables.values()):
        raise ShapeError(f"Disables: {disables!r} is not a map of component to boolean")
    return CriticalConfig(
        cluster_cidr=_nets(doc, "ClusterIPRanges", "ClusterIPRange"),
        service_cidr=_nets(doc, "ServiceIPRanges", "ServiceIPRange"), cluster_dns=_ips(doc),
        cluster_domain=_string(doc, "ClusterDomain", required=True),
        flannel_backend=_string(doc, "FlannelBackend", required=True),
        egress_selector_mode=_string(doc, "EgressSelectorMode", required=False),
        secrets_encryption_provider=_string(doc, "EncryptProvider", required=False),
        switches=tuple(switches), disable=tuple(sorted(k for k, v in disables.items() if v)))


def config_lines(config: CriticalConfig) -> tuple[str, ...]:
    """config.yaml lines (k3s's config file: pkg/configfilearg; every value a double-quoted YAML
    string, lists one item a line). Booleans only when true: false is each flag's default."""
    q = json.dumps
    lines = [f"cluster-cidr: {q(','.join(config.cluster_cidr))}",
             f"service-cidr: {q(','.join(config.service_cidr))}",
             f"cluster-dns: {q(','.join(config.cluster_dns))}",
             f"cluster-domain: {q(config.cluster_domain)}",
             f"flannel-backend: {q(config.flannel_backend)}"]
    if config.egress_selector_mode:
        lines.append(f"egress-selector-mode: {q(config.egress_selector_mode)}")
    if config.secrets_encryption_provider:
        lines.append(f"secrets-encryption-provider: {q(config.secrets_encryption_provider)}")
    lines += [f"{flag}: true" for flag, on in config.switches if on]
    if config.disable:
        lines += ["disable:", *(f"  - {q(name)}" for name in config.disable)]
    return tuple(lines)


def render_critical_block(*, config: CriticalConfig, source: str) -> str:
    """The block the preflight prints and the join appends to config.yaml (markers included: they
    are YAML comments)."""
    return "\n".join((f"{BEGIN} {source}", *config_lines(config), END)) + "\n"
