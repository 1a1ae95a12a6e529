"""Renderers: step → shell text. Pure.

Every interpolated value goes through ``shlex.quote``. Secrets never appear in rendered text:
commands read them from environment variables or stdin that the components mark secret.
Command text holds no absolute or machine-specific paths on the operator's side: executors are
called as ``cpswap ...`` from PATH.

What a slot's resources may contain is deliberately narrow: the slot's own host, the
control-plane endpoint (VIP) and stack-level settings. Survivors are discovered at run time
(through the VIP), so a swap of one slot never changes another slot's inputs, and a delete that
runs from stored state months later is still valid.
"""
from cpswap.core.renderers.etcd import render_adoption_check, render_etcd_leave, render_etcd_verify
from cpswap.core.renderers.k3s import render_k3s_join
from cpswap.core.renderers.kubeadm import render_kubeadm_join, render_kubeadm_prepare
from cpswap.core.renderers.kube import render_node_delete, render_node_verify, render_pvc_recover
from cpswap.core.renderers.ocboot import render_ocboot_join, render_ocboot_template
from cpswap.core.renderers.keepalived import render_keepalived_install

__all__ = [
           "render_adoption_check",
           "render_etcd_leave",
           "render_etcd_verify",
           "render_k3s_join",
           "render_keepalived_install",
           "render_kubeadm_join",
           "render_kubeadm_prepare",
           "render_node_delete",
           "render_node_verify",
           "render_ocboot_join",
           "render_ocboot_template",
           "render_pvc_recover",
]
