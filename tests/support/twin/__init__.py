"""The twin: fake hosts (network namespaces with sshd), real etcd laid out like k3s, strict
installer shims, the kube emulator, and a replayer that stands in for the Pulumi engine. Test-only."""
