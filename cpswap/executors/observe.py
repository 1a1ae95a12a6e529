"""Live, read-only observation for the planner: etcd facts (and Kubernetes facts when a
kubeconfig is given), each with a short timeout. Not pure (network).

Never raises for reachability: an unreachable or misconfigured cluster yields facts with
``reachable=False`` and an error that names the cause (no key material), and the plan is then
marked unobserved with a warning.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from cpswap.core.facts import EtcdFacts, Observation
from cpswap.core.inputs import host_port
from cpswap.core.model import StackModel
from cpswap.executors.etcd import ENV_KEYS, observe_etcd, pem_connection


def observe_cluster(*, etcd_endpoints: Sequence[str], ca_pem: str | None, cert_pem: str | None,
                    key_pem: str | None, kubeconfig: str | None = None, departing_node: str | None = None,
                    timeout: float = 3.0, warn: Callable[[str], None] = lambda _: None) -> Observation:
    etcd = _observe_etcd(etcd_endpoints, ca_pem, cert_pem, key_pem, timeout)
    if not etcd.reachable:
        warn(f"etcd not observed: {etcd.error}; the plan is marked unobserved")
    kube = None
    if kubeconfig and departing_node:
        from cpswap.executors.kube import observe_kube  # only when a kubeconfig is given

        kube = observe_kube(kubeconfig=kubeconfig, node=departing_node, timeout=timeout)
        if not kube.reachable:
            warn(f"Kubernetes not observed: {kube.error}")
    return Observation(etcd=etcd, kube=kube)


def _observe_etcd(endpoints: Sequence[str], ca: str | None, cert: str | None, key: str | None,
                  timeout: float) -> EtcdFacts:
    if not (ca and cert and key):
        return EtcdFacts(reachable=False, endpoints=tuple(endpoints),
                         error="no etcd credentials (secret config etcdCaCert/etcdClientCert/etcdClientKey or "
                               "CPSWAP_ETCD_*_DATA)")
    try:
        with pem_connection(endpoints=endpoints, ca_pem=ca, cert_pem=cert, key_pem=key, timeout=timeout) as conn:
            return observe_etcd(connection=conn)
    except Exception as exc:  # observation degrades to "unobserved", it never fails the plan
        return EtcdFacts(reachable=False, endpoints=tuple(endpoints), error=str(exc)[:300])


def observe_from_environment(*, model: StackModel, departing_node: str | None, timeout: float,
                             warn: Callable[[str], None]) -> Observation:
    """For `cpswap plan --observe`: credentials from CPSWAP_ETCD_*_DATA / CPSWAP_KUBECONFIG_DATA,
    endpoints from CPSWAP_ETCD_ENDPOINTS or the members' IPs."""
    override = [e for e in os.environ.get("CPSWAP_ETCD_ENDPOINTS", "").split(",") if e]
    endpoints = override or [f"https://{host_port(m.host.ip, model.etcd.client_port)}" for m in model.members]
    return observe_cluster(etcd_endpoints=endpoints, ca_pem=os.environ.get(ENV_KEYS[0]),
                           cert_pem=os.environ.get(ENV_KEYS[1]), key_pem=os.environ.get(ENV_KEYS[2]),
                           kubeconfig=os.environ.get("CPSWAP_KUBECONFIG_DATA"), departing_node=departing_node,
                           timeout=timeout, warn=warn)
