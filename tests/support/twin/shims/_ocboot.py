"""ocboot's rules for the twin's ocboot.sh shim, each citing the ocboot source it follows. Test-only.

Follows github:yunionio/ocboot at f70e31bb3ab64284dacd74a6ee1a164cd88e569c (docs/CONFORMANCE.md,
"ocboot"). Pure: ``invocation(argv)`` and ``load(config)`` raise ``OcbootError`` where the real
ocboot stops, and ``load`` returns what the loader and the k3s roles derive from the config: the
inventory groups and each host's ``node_ip`` (``Node.ansible_host_vars``).

What ocboot does NOT reject is not rejected here either (the loader ignores unknown keys).
"""
from __future__ import annotations

from dataclasses import dataclass

UPSTREAM = "yunionio/ocboot@f70e31bb3ab64284dacd74a6ee1a164cd88e569c"
STACKS = ("full", "cmp", "virt", "light-virt", "ai")  # run.py get_args: choices of STACK
SUBCOMMANDS = ("install", "upgrade", "add-node", "add-lbagent", "backup", "restore", "setup-container-env",
               "switch-edition", "clickhouse", "setup-ai-env", "start", "stop", "set-calico-version", "fabric-setup")


class OcbootError(Exception):
    """Where the real ocboot stops; ``rule`` cites the source."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(f"{message} [{UPSTREAM} {rule}]")
        self.rule = rule


@dataclass(frozen=True)
class Host:
    address: str
    node_ip: str | None  # None where ocboot sets no node_ip (127.0.0.1: Node.ansible_host_vars)
    local: bool  # use_local: ansible_connection=local, i.e. inside the ocboot container
    user: str


@dataclass(frozen=True)
class Inventory:
    primary: Host
    masters: tuple[Host, ...]
    controlplane_host: str
    controlplane_port: str
    db_password: str


def invocation(argv: list[str]) -> str:
    """The config path of the two forms cpswap uses (ocboot.sh: `run.py` or an ocboot.py subcommand)."""
    if len(argv) == 3 and argv[0] == "run.py" and argv[1] in STACKS:
        return argv[2]
    if len(argv) == 2 and argv[0] == "install":
        return argv[1]  # lib/install.py add_command: one positional `config`
    raise OcbootError(f"unsupported invocation {argv}; use `run.py <stack> <config.yml>` or `install <config.yml>`",
                      "ocboot.sh L104-108 (run.py) / is_ocboot_subcmd; run.py get_args; lib/install.py add_command")


def _required(section: str, spec: dict, key: str, alt: str | None = None) -> str:
    """lib/ocboot.py Config.ensure_get: a missing or empty value raises ConfigNotFoundException."""
    value = spec.get(key) or (spec.get(alt) if alt else None)
    if not value:
        what = f"{key} or {alt}" if alt else key
        raise OcbootError(f"ConfigNotFoundException: not found '{what}' in config {section}",
                          "lib/ocboot.py L326-338 Config.ensure_get")
    return str(value)


def _node(section: str, spec: dict) -> Host:
    """lib/ocboot.py L340-360 Node.__init__: use_local means 127.0.0.1, else host|hostname is required;
    node_ip defaults to the host; L384-385: node_ip is only an ansible var when the host is not 127.0.0.1."""
    local = bool(spec.get("use_local", False))
    address = "127.0.0.1" if local else _required(section, spec, "host", "hostname")
    node_ip = spec.get("node_ip") or address
    return Host(address=address, node_ip=None if address == "127.0.0.1" else str(node_ip), local=local,
                user=str(spec.get("user", "root")))


def load(config: object) -> Inventory:
    if not isinstance(config, dict):
        raise OcbootError("config is not a mapping", "lib/ocboot.py load_config: Config(yaml.safe_load(f))")
    if config.get("mariadb_node") and config.get("mariadb_ha_nodes"):
        raise OcbootError("mariadb_node and mariadb_ha_nodes can't coexist in config",
                          "lib/ocboot.py OcbootConfig.__init__ L137-138")
    primary_spec, masters_spec = config.get("primary_master_node"), config.get("master_nodes") or {}
    if not primary_spec:
        raise OcbootError("the twin emulates control-plane joins through primary_master_node only",
                          "lib/ocboot.py OcbootConfig._fetch_conf (an absent group is None)")
    primary = _node("primary_master_node", primary_spec)  # _fetch_conf: primary before master_nodes
    _required("primary_master_node", primary_spec, "controlplane_host")  # OnecloudConfig.__init__ L518
    for key in ("db_host", "db_password", "onecloud_version"):  # PrimaryMasterConfig.__init__ L632-635
        _required("primary_master_node", primary_spec, key)
    masters: tuple[Host, ...] = ()
    if masters_spec:  # an absent master_nodes group is None: a single-server install
        _required("master_nodes", masters_spec, "controlplane_host")
        _required("master_nodes", masters_spec, "hosts")  # get_nodes L803: ensure_get('hosts')
        masters = tuple(_node("master_nodes.hosts", h if isinstance(h, dict) else {}) for h in masters_spec["hosts"])
    return Inventory(primary=primary, masters=masters,
                     controlplane_host=str(masters_spec.get("controlplane_host", primary_spec["controlplane_host"])),
                     controlplane_port=str(masters_spec.get("controlplane_port", primary_spec.get("controlplane_port",
                                                                                                  "6443"))),
                     db_password=str(primary_spec["db_password"]))


def check_play(inventory: Inventory) -> None:
    """Where the playbook aborts before touching k3s."""
    for host in (inventory.primary, *inventory.masters):
        if host.local:
            raise OcbootError(
                "use_local: ansible_connection=local runs the play inside ocboot's Alpine container (ocboot.sh runs "
                "ocboot.py under `buildah run`), and utils/misc-check has no alpine.yml: 'No file was found when "
                "using first_found'", "lib/ocboot.py L386-387 (ansible_connection local); ocboot.sh L134-145 "
                "(buildah run); onecloud/roles/utils/misc-check/tasks/os.yml L1-6 (first_found, skip: false)")
    if inventory.primary.node_ip is None:
        raise OcbootError("primary_master_node has no node_ip (127.0.0.1 gets none) and the k3s config template "
                          "renders `node-ip: {{ node_ip }}`: undefined variable",
                          "lib/ocboot.py L384-385; onecloud/roles/k3s/config/templates/config.yaml.j2 L25")


def joins(inventory: Inventory) -> bool:
    """onecloud/roles/k3s/k3s_server/tasks/main.yml L132-135, 'Start other server if any and verify
    status': when ('master_nodes' in groups) and (groups['master_nodes'] | length) > 1."""
    return len(inventory.masters) > 1


def expected_servers(inventory: Inventory) -> int:
    """main.yml L165-171 'Verify that all server nodes joined': control-plane Nodes ==
    groups['master_nodes'] | length + 1 (20 retries, 10 s apart)."""
    return len(inventory.masters) + 1
