"""Renderers for a kubeadm control-plane join. Pure.

Two commands:
1. ``prepare`` runs on a survivor (reached through the VIP): it uploads the control-plane
   certificates and creates a token, printing exactly three ``KEY=value`` lines. Its output is
   secret (the component sets ``logging=NONE`` and ``additional_secret_outputs``).
2. ``join`` runs on the new host with that output on stdin; the token and certificate key are
   read into shell variables and never appear in the text, the log or plain state. The read loop
   also takes a last line without a newline (pulumi-command trims the trailing newline of the
   stdout it passes on; the twin caught this).
"""
from __future__ import annotations

from shlex import quote

from cpswap.core.model import Endpoint, Host, KubeadmSettings


def render_kubeadm_prepare() -> str:
    return (
        "set -eu; "
        "key=$(kubeadm init phase upload-certs --upload-certs 2>/dev/null | tail -n 1); "
        "join=$(kubeadm token create --print-join-command 2>/dev/null); "
        "set -- $join; token=''; hash=''; "
        "while [ $# -gt 0 ]; do case $1 in "
        "--token) token=$2; shift;; --discovery-token-ca-cert-hash) hash=$2; shift;; esac; shift; done; "
        "test -n \"$key\" && test -n \"$token\" && test -n \"$hash\"; "
        "printf 'TOKEN=%s\\nCA_HASH=%s\\nCERT_KEY=%s\\n' \"$token\" \"$hash\" \"$key\""
    )


def render_kubeadm_join(*, host: Host, endpoint: Endpoint, kubeadm: KubeadmSettings) -> str:
    cri = f" --cri-socket {quote(kubeadm.cri_socket)}" if kubeadm.cri_socket else ""
    return (
        "set -eu; "
        "if test -f /etc/kubernetes/manifests/etcd.yaml; then "
        f"echo {quote(f'{host.name}: already a kubeadm control-plane node; nothing to join')}; exit 0; fi; "
        "while IFS='=' read -r k v || [ -n \"$k\" ]; do case $k in TOKEN) TOKEN=$v;; CA_HASH) CA_HASH=$v;; "
        "CERT_KEY) CERT_KEY=$v;; esac; done; "
        f"exec kubeadm join {quote(str(endpoint))} --token \"$TOKEN\" "
        "--discovery-token-ca-cert-hash \"$CA_HASH\" --control-plane --certificate-key \"$CERT_KEY\" "
        f"--apiserver-advertise-address {quote(host.ip)} "
        f"--apiserver-bind-port {kubeadm.apiserver_bind_port} --node-name {quote(host.name)}{cri}"
    )
