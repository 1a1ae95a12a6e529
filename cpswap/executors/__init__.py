"""Executors: the etcd and Kubernetes clients behind `cpswap etcd` and `cpswap kube`.

Not pure: they talk to the network. Every call has a deadline; every guard lives here too,
whatever the caller checked.
"""
