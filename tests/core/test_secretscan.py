"""`cpswap check` flags secret material committed in plain text in a stack file (issue 13)."""
from __future__ import annotations

import json
import shutil

import pytest
import yaml

from cpswap.cli import main
from cpswap.core.secretscan import plain_secrets
from tests.support.pulumi_mocks import ROOT

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: abcdef0123456789\n"


@pytest.mark.parametrize("key, value, finding", [
    ("cpswap:sshPrivateKey", KEY, "cpswap:sshPrivateKey holds a PEM private key in plain text"),
    ("cpswap:etcdClientKey", "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----",
     "a PEM private key"),
    ("cpswap:kubeconfig", KUBECONFIG, "cpswap:kubeconfig holds a kubeconfig with credentials"),
    ("cpswap:k3sToken", "K10abc::server:def", "cpswap's secret key k3sToken"),
    ("cpswap:ocbootDbPassword", "0neC1oudDB#", "cpswap's secret key ocbootDbPassword"),
    ("cpswap:keepalivedAuthPass", "vrrp1234", "cpswap's secret key keepalivedAuthPass"),
    ("cpswap:ocboot", {"version": "v3.11.9", "dbHost": "192.168.0.252", "dbPassword": "0neC1oudDB#"},
     "cpswap:ocboot.dbPassword holds a value under a key named 'dbPassword'"),
    ("cpswap:kubeadm", {"token": "abcdef.0123456789abcdef"}, "cpswap:kubeadm.token holds a value under a key"),
    ("aws:secretKey", "wJalrXUtnFEMI/K7MDENG", "aws:secretKey holds a value under a key named 'secretKey'"),
    ("cpswap:notes", ["ok", KEY], "cpswap:notes[1] holds a PEM private key"),
])
def test_plain_secrets_are_found_and_never_echoed(key, value, finding):
    found = plain_secrets({key: value}, where="Pulumi.prod.yaml")
    assert len(found) == 1 and finding in found[0].message, found
    assert found[0].rule == "cpswap-no-plain-secrets"
    secret = value if isinstance(value, str) else json.dumps(value)
    assert all(part not in found[0].message for part in ("0neC1oudDB", "b3BlbnNz", "abcdef0123", "K10abc", "vrrp1234",
                                                           "wJalr", "MHcC", "abcdef.01")), found[0].message
    assert secret not in found[0].message


@pytest.mark.parametrize("config", [
    {"cpswap:sshPrivateKey": {"secure": "v1:AAAA"}, "cpswap:k3sToken": {"secure": "v1:BBBB"}},
    {"cpswap:ocboot": {"dbUser": "root", "dbPort": 3306}, "cpswap:ssh": {"user": "root", "port": 22}},
    {"cpswap:etcd": {"preset": "env"}, "cpswap:observe": False, "cpswap:k3s": {"dataDir": "/var/lib/rancher/k3s"}},
])
def test_secure_values_and_ordinary_settings_are_clean(config):
    assert plain_secrets(config, where="Pulumi.prod.yaml") == ()


def test_cpswap_check_fails_on_a_committed_private_key(tmp_path, capsys):
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    doc = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    (tmp_path / ".cpswap").mkdir()
    shutil.copy(ROOT / ".cpswap" / "applied-prod.json", tmp_path / ".cpswap" / "applied-prod.json")
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    assert main(["check", "--stack", "prod", "--dir", str(tmp_path)]) == 0
    capsys.readouterr()
    doc["config"]["cpswap:sshPrivateKey"] = KEY
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(doc))
    assert main(["check", "--stack", "prod", "--dir", str(tmp_path), "--json"]) == 1
    out = capsys.readouterr().out
    result = json.loads(out)
    assert [v["rule"] for v in result["violations"]] == ["cpswap-no-plain-secrets"]
    assert "b3BlbnNz" not in out


def test_where_a_secret_is_kept_is_not_a_secret():
    assert plain_secrets({"cpswap:k3s": {"tokenFile": "/etc/rancher/k3s/token", "passwordSecretRef": "x"}},
                         where="f") == ()
