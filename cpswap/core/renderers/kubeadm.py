"""Renderers for a kubeadm control-plane join. Pure.

Two commands (docs/CONFORMANCE.md "kubeadm"):
1. ``prepare`` runs on a survivor (reached through the VIP). When the joining host is a Node
   already (adoption) it issues nothing and prints ``ADOPTED=<name>`` (the rest empty); a
   kubectl error other than NotFound fails it. Else it uploads the control-plane certificates and creates a token, both
   with ``--config`` = the cluster's own ClusterConfiguration (kubeadm-config, which names the
   kubernetesVersion: without it kubeadm looks the version up on dl.k8s.io, which an air-gapped
   host cannot reach), and prints ``ADOPTED=`` and three ``KEY=value`` lines, once, as its last statement. Its output is secret (the
   component sets ``logging=NONE`` and ``additional_secret_outputs``).
2. ``join`` runs on the new host with that output on stdin. The token, CA hash and certificate
   key go into a 0600 JoinConfiguration (``kubeadm.k8s.io/v1beta4`` for kubeadm >= 1.31, else
   v1beta3: same fields) written with the shell's builtin ``printf``, and kubeadm gets only
   ``join --config <file>`` (kubeadm refuses ``--config`` mixed with other flags but a few:
   validation.go ``isAllowedFlag``): no secret in any argv. The file is removed on exit. The
   read loop also takes a last line without a newline (pulumi-command trims the trailing newline
   of the stdout it passes on; the twin caught this).
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import Endpoint, Host, KubeadmSettings

ADMIN_KUBECONFIG = "/etc/kubernetes/admin.conf"
JOIN_CONFIG = "/etc/kubernetes/cpswap-join.yaml"


def render_kubeadm_prepare(*, host: Host) -> str:
    """Prints once, as its last statement (``ADOPTED`` set, the rest empty, on adoption)."""
    name = quote(host.name)
    kubectl = f"kubectl --kubeconfig {ADMIN_KUBECONFIG}"
    return (
        "set -eu; umask 077; adopted=''; token=''; hash=''; key=''; "
        f"if out=$({kubectl} get node {name} -o name 2>&1); then adopted={name}; else "
        "case $out in *'(NotFound)'*) ;; *) "
        f"echo {quote(f'{host.name}: cannot tell whether it is a Node (kubectl failed); issuing no join material:')} "
        "\"$out\" >&2; exit 1;; esac; "
        "cfg=$(mktemp); trap 'rm -f \"$cfg\"' EXIT; "
        f"{kubectl} -n kube-system get configmap kubeadm-config -o 'jsonpath={{.data.ClusterConfiguration}}' > \"$cfg\"; "
        "grep -q '^kubernetesVersion:' \"$cfg\" || { echo 'kubeadm-config has no ClusterConfiguration with a "
        "kubernetesVersion; refusing (kubeadm would look the version up online)' >&2; exit 1; }; "
        "key=$(kubeadm init phase upload-certs --upload-certs --config \"$cfg\" 2>/dev/null | tail -n 1); "
        "join=$(kubeadm token create --print-join-command --config \"$cfg\" 2>/dev/null); "
        "set -- $join; "
        "while [ $# -gt 0 ]; do case $1 in "
        "--token) token=$2; shift;; --discovery-token-ca-cert-hash) hash=$2; shift;; esac; shift; done; "
        "test -n \"$key\" && test -n \"$token\" && test -n \"$hash\"; fi; "
        "printf 'ADOPTED=%s\\nTOKEN=%s\\nCA_HASH=%s\\nCERT_KEY=%s\\n' \"$adopted\" \"$token\" \"$hash\" \"$key\""
    )


def render_kubeadm_join(*, host: Host, endpoint: Endpoint, kubeadm: KubeadmSettings) -> str:
    def v(text: object) -> str:  # a printf-format-safe value (validated names, IPs and paths have no %)
        return str(text).replace("%", "%%")

    cri = f"  criSocket: \"{v(kubeadm.cri_socket)}\"\\n" if kubeadm.cri_socket else ""
    static = (
        f"discovery:\\n  bootstrapToken:\\n    apiServerEndpoint: \"{v(endpoint)}\"\\n"
        f"    token: \"%s\"\\n    caCertHashes:\\n      - \"%s\"\\n"
        f"controlPlane:\\n  certificateKey: \"%s\"\\n  localAPIEndpoint:\\n"
        f"    advertiseAddress: \"{v(host.ip)}\"\\n    bindPort: {kubeadm.apiserver_bind_port}\\n"
        f"nodeRegistration:\\n  name: \"{v(host.name)}\"\\n{cri}"
    )
    return (
        "set -eu; "
        "if test -f /etc/kubernetes/manifests/etcd.yaml; then "
        f"echo {quote(f'{host.name}: already a kubeadm control-plane node; nothing to join')}; exit 0; fi; "
        "TOKEN=''; CA_HASH=''; CERT_KEY=''; ADOPTED=''; "
        "while IFS='=' read -r k v || [ -n \"$k\" ]; do case $k in TOKEN) TOKEN=$v;; CA_HASH) CA_HASH=$v;; "
        "CERT_KEY) CERT_KEY=$v;; ADOPTED) ADOPTED=$v;; esac; done; "
        "if [ -n \"$ADOPTED\" ]; then "
        f"echo {quote(f'{host.name}: a Node already, but without /etc/kubernetes/manifests/etcd.yaml; not joining')} >&2; "
        "exit 1; fi; "
        "test -n \"$TOKEN\" && test -n \"$CA_HASH\" && test -n \"$CERT_KEY\"; "
        "minor=$(kubeadm version -o short | sed -n 's/^v1\\.\\([0-9]*\\).*/\\1/p'); "
        "api=v1beta3; if [ \"${minor:-0}\" -ge 31 ]; then api=v1beta4; fi; "
        f"umask 077; mkdir -p /etc/kubernetes; trap 'rm -f {JOIN_CONFIG}' EXIT; "
        f"printf {quote('apiVersion: kubeadm.k8s.io/%s' + chr(92) + 'nkind: JoinConfiguration' + chr(92) + 'n' + static)} "
        f"\"$api\" \"$TOKEN\" \"$CA_HASH\" \"$CERT_KEY\" > {JOIN_CONFIG}; "
        f"kubeadm join --config {JOIN_CONFIG}"
    )
