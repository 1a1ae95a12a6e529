"""The cluster-critical k3s flags: a survivor's ``/v1-k3s/config`` answer -> the join's config.yaml keys,
and the join token's parts (table-driven). Pure.

The answers are ``config.Control`` as Go's encoding/json writes it (k3s-io/k3s
pkg/daemons/config/types.go at 005499a940eafe99977bcabd6991a888a4cb6642; net.IP as text,
*net.IPNet as {"IP", "Mask" base64}; Control's own DisableServiceLB shadows the embedded one).
"""
from __future__ import annotations

import json

import pytest
import yaml

from cpswap.core import k3s_critical as kc

V4_16 = "//8AAA=="  # 255.255.0.0
V4_12 = "//AAAA=="  # 255.240.0.0
V6_56 = "/////////wAAAAAAAAAAAA=="


def net(ip: str, mask: str) -> dict:
    return {"IP": ip, "Mask": mask}


# what a default v1.28 server (k3s server --cluster-init) answers, abridged to the fields cpswap reads
# plus a few others every answer has
DEFAULT = {
    "ClusterDNSs": ["10.43.0.10"], "ClusterIPRanges": [net("10.42.0.0", V4_16)], "ClusterDNS": "10.43.0.10",
    "ClusterDomain": "cluster.local", "ClusterIPRange": net("10.42.0.0", V4_16), "DisableCCM": False,
    "DisableHelmController": False, "DisableNPC": False, "EncryptSecrets": False, "EmbeddedRegistry": False,
    "FlannelBackend": "vxlan", "FlannelIPv6Masq": False, "FlannelExternalIP": False, "EgressSelectorMode": "agent",
    "ServiceIPRange": net("10.43.0.0", V4_16), "ServiceIPRanges": [net("10.43.0.0", V4_16)],
    "AdvertisePort": 0, "HTTPSPort": 6443, "SupervisorPort": 6443, "DataDir": "/var/lib/rancher/k3s/server",
    "Disables": {}, "DisableServiceLB": False, "Skips": {}, "ServerNodeName": "cp-1", "SANs": ["10.0.0.100"],
}
DEFAULT_LINES = ('cluster-cidr: "10.42.0.0/16"', 'service-cidr: "10.43.0.0/16"', 'cluster-dns: "10.43.0.10"',
                 'cluster-domain: "cluster.local"', 'flannel-backend: "vxlan"', 'egress-selector-mode: "agent"')

PARSE_CASES = [
    ("k3s defaults", DEFAULT, DEFAULT_LINES),
    ("ocboot's servers (flannel none, no network policy, own CIDRs)",
     {**DEFAULT, "ClusterIPRanges": [net("10.40.0.0", V4_16)], "ServiceIPRanges": [net("10.96.0.0", V4_12)],
      "ClusterDNSs": ["10.96.0.10"], "FlannelBackend": "none", "DisableNPC": True},
     ('cluster-cidr: "10.40.0.0/16"', 'service-cidr: "10.96.0.0/12"', 'cluster-dns: "10.96.0.10"',
      'cluster-domain: "cluster.local"', 'flannel-backend: "none"', 'egress-selector-mode: "agent"',
      "disable-network-policy: true")),
    ("dual-stack: lists joined with commas, as k3s splits them",
     {**DEFAULT, "ClusterIPRanges": [net("10.42.0.0", V4_16), net("2001:cafe:42::", V6_56)],
      "ClusterDNSs": ["10.43.0.10", "fd00:43::a"]},
     ('cluster-cidr: "10.42.0.0/16,2001:cafe:42::/56"', 'service-cidr: "10.43.0.0/16"',
      'cluster-dns: "10.43.0.10,fd00:43::a"', *DEFAULT_LINES[3:])),
    ("secrets encryption, disabled components and a newer server's fields",
     {**DEFAULT, "EncryptSecrets": True, "EncryptProvider": "secretbox", "SupervisorMetrics": False,
      "Disables": {"traefik": True, "servicelb": True, "metrics-server": False}, "DisableServiceLB": True},
     (*DEFAULT_LINES, 'secrets-encryption-provider: "secretbox"', "secrets-encryption: true",
      "disable:", '  - "servicelb"', '  - "traefik"')),
    ("an older server: single fields only, no egress mode (k3s then takes the joining server's own)",
     {"ClusterDNS": "10.43.0.10", "ClusterIPRange": net("10.42.0.0", V4_16), "ServiceIPRange": net("10.43.0.0", V4_16),
      "ClusterDomain": "cluster.local", "FlannelBackend": "vxlan", "DisableNPC": False},
     DEFAULT_LINES[:5]),
]


@pytest.mark.parametrize(("doc", "lines"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_a_survivors_config_becomes_the_joins_config_keys(doc, lines):
    config = kc.parse_control(json.dumps(doc))
    assert kc.config_lines(config) == lines
    parsed = yaml.safe_load("\n".join(lines))  # what k3s's config file loader reads
    assert parsed["cluster-cidr"].split(",") == list(config.cluster_cidr)


SHAPE_CASES = [
    ("not JSON", "<html>401</html>", "not JSON"),
    ("not an object", "[]", "not a JSON object but list"),
    ("no cluster CIDR", json.dumps({k: v for k, v in DEFAULT.items() if not k.startswith("ClusterIPRange")}),
     "ClusterIPRanges/ClusterIPRange: missing"),
    ("mask of the other family", json.dumps({**DEFAULT, "ClusterIPRanges": [net("10.42.0.0", V6_56)]}),
     "ClusterIPRanges[0]: mask '/////////wAAAAAAAAAAAA==' is not a contiguous IPv4 prefix mask"),
    ("holes in the mask", json.dumps({**DEFAULT, "ServiceIPRanges": [net("10.43.0.0", "/wD/AA==")]}),
     "ServiceIPRanges[0]: mask '/wD/AA==' is not a contiguous IPv4 prefix mask"),
    ("CIDR as a string (not Go's encoding)", json.dumps({**DEFAULT, "ServiceIPRanges": ["10.43.0.0/16"]}),
     "ServiceIPRanges[0]: '10.43.0.0/16' is not a Go net.IPNet"),
    ("DNS not an address", json.dumps({**DEFAULT, "ClusterDNSs": ["dns"]}), "ClusterDNSs[0]/ClusterDNS: 'dns'"),
    ("no flannel backend", json.dumps({k: v for k, v in DEFAULT.items() if k != "FlannelBackend"}),
     "FlannelBackend: None is not a non-empty string"),
    ("a switch that is not a boolean", json.dumps({**DEFAULT, "EncryptSecrets": "true"}),
     "EncryptSecrets: 'true' is not a boolean"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
def test_an_answer_that_is_not_a_k3s_config_names_the_field(text, message):
    with pytest.raises(kc.ShapeError) as raised:
        kc.parse_control(text)
    assert message in str(raised.value)


def test_the_block_carries_its_source_between_the_markers_the_join_looks_for():
    block = kc.render_critical_block(config=kc.parse_control(json.dumps(DEFAULT)),
                                     source="https://10.0.0.100:6443/v1-k3s/config")
    lines = block.splitlines()
    assert lines[0] == f"{kc.BEGIN} https://10.0.0.100:6443/v1-k3s/config" and lines[-1] == kc.END
    assert tuple(lines[1:-1]) == DEFAULT_LINES
    assert yaml.safe_load(block)["flannel-backend"] == "vxlan"


HASH = "a" * 64
TOKEN_CASES = [  # pkg/clientaccess/token.go parseToken (and token_test.go's shapes)
    ("bare password (ocboot's)", "mytoken@yunionio", kc.JoinToken("", "", "mytoken@yunionio")),
    ("full server token", f"K10{HASH}::server:s3cret", kc.JoinToken(HASH, "server", "s3cret")),
    ("no CA hash", "K10::node:pw", kc.JoinToken("", "node", "pw")),
    ("password with colons", "K10::server:a:b::c", kc.JoinToken("", "server", "a:b::c")),
    ("bootstrap token", "abcdef.0123456789abcdef", kc.JoinToken("", "", "abcdef.0123456789abcdef", bootstrap=True)),
    ("bootstrap token with a CA hash", f"K10{HASH}::abcdef.0123456789abcdef",
     kc.JoinToken(HASH, "", "abcdef.0123456789abcdef", bootstrap=True)),
]


@pytest.mark.parametrize(("token", "parsed"), [c[1:] for c in TOKEN_CASES], ids=[c[0] for c in TOKEN_CASES])
def test_join_tokens_parse_as_k3s_parses_them(token, parsed):
    assert kc.parse_join_token(token) == parsed
    # compareConfig reads the config as user "node" (WithUser); a bootstrap token has no user
    assert kc.parse_join_token(token).as_user("node").username == ("" if parsed.bootstrap else "node")


@pytest.mark.parametrize(("token", "message"), [
    ("", "token must not be empty"), ("K10abc::server:pw", "invalid token CA hash length"),
    (f"K10{HASH}::server:", "invalid token format"), (f"K10{HASH}::nocolon", "invalid token format"),
])
def test_bad_tokens_are_refused_without_echoing_them(token, message):
    with pytest.raises(kc.ShapeError, match=message) as raised:
        kc.parse_join_token(token)
    assert not token or token not in str(raised.value)
