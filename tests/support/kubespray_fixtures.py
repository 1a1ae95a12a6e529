"""Seed 001's kubespray inventory (kubean's hosts-conf ConfigMap) and its kube-public/cluster-info
kubeconfig: shared by the pure kubespray tests and the kubean executor tests (test-only data)."""

SEED_001 = """
all:
  hosts:
    centos-master1: {ip: 10.6.0.11, access_ip: 10.6.0.11, ansible_host: 10.6.0.11}
    centos-master2: {ip: 10.6.0.12, access_ip: 10.6.0.12, ansible_host: 10.6.0.12}
    centos-master3: {ip: 10.6.0.13, access_ip: 10.6.0.13, ansible_host: 10.6.0.13}
  children:
    kube_control_plane: {hosts: {centos-master1: null, centos-master2: null, centos-master3: null}}
    kube_node: {hosts: {centos-master1: null, centos-master2: null, centos-master3: null}}
    etcd: {hosts: {centos-master1: null, centos-master2: null, centos-master3: null}}
    k8s_cluster: {children: {kube_control_plane: null, kube_node: null}}
"""

CLUSTER_INFO = """apiVersion: v1
kind: Config
clusters:
- name: ''
  cluster:
    certificate-authority-data: Q0E=
    server: https://10.6.0.11:6443
"""
