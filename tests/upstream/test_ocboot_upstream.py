"""ocboot's own code on what cpswap sends (docs/CONFORMANCE.md "ocboot").

Runs the real loader (lib/ocboot.py load_config, generate_inventory_file, ansible_global_vars) of
an ocboot checkout on the join config cpswap completes on the VIP holder, then evaluates with
ansible-core the real `when:` conditions of onecloud/roles/k3s/k3s_server/tasks/main.yml for each
host of the inventory the loader wrote, and renders the real k3s config template for the primary.
The same is done for the shape cpswap sent before issue 12, which the real ocboot cannot join.

Needs an ocboot checkout (never committed): $CPSWAP_OCBOOT_CHECKOUT, default /tmp/ocboot, e.g.
`git clone https://github.com/yunionio/ocboot /tmp/ocboot` (its commit is printed; the ledger
records f70e31bb), and ansible-core (the test extras). Skips with the reason where either is absent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.ocboot_join import SEED_NODES, complete

CHECKOUT = Path(os.environ.get("CPSWAP_OCBOOT_CHECKOUT", "/tmp/ocboot"))
pytestmark = pytest.mark.skipif(not (CHECKOUT / "lib" / "ocboot.py").exists(),
                                reason=f"no ocboot checkout at {CHECKOUT} (set CPSWAP_OCBOOT_CHECKOUT)")
ansible = pytest.importorskip("ansible", reason="ansible-core is not installed (pip install ansible-core)")

LOADER = """
import json, sys
sys.path.insert(0, sys.argv[1])
from lib import ocboot
config = ocboot.load_config(sys.argv[2])
print(json.dumps({"inventory": config.generate_inventory_file(), "vars": config.ansible_global_vars()}))
"""


def run_loader(config: dict, tmp_path: Path) -> tuple[dict, dict]:
    """ocboot's loader in its own process (it imports its `lib` package), in a scratch work dir."""
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-c", LOADER, str(CHECKOUT), "config.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    return yaml.safe_load((tmp_path / doc["inventory"]).read_text()), doc["vars"]


def tasks_by_name() -> dict[str, dict]:
    """Every task and block of the k3s_server role, by name (nested blocks included)."""
    found: dict[str, dict] = {}

    def walk(tasks, parent=""):
        for task in tasks or []:
            name = task.get("name", "")
            found[f"{parent}/{name}" if parent else name] = task
            walk(task.get("block"), name)

    walk(yaml.safe_load((CHECKOUT / "onecloud/roles/k3s/k3s_server/tasks/main.yml").read_text()))
    return found


class Play:
    """ansible-core's own inventory, variable manager and conditional evaluation."""

    def __init__(self, inventory_file: Path, extra_vars: dict) -> None:
        from ansible.inventory.manager import InventoryManager
        from ansible.parsing.dataloader import DataLoader
        from ansible.vars.manager import VariableManager

        self.loader = DataLoader()
        self.inventory = InventoryManager(loader=self.loader, sources=[str(inventory_file)])
        self.variables = VariableManager(loader=self.loader, inventory=self.inventory)
        self.variables._extra_vars = extra_vars

    def host_vars(self, host: str) -> dict:
        return self.variables.get_vars(host=self.inventory.get_host(host))

    def when(self, host: str, task: dict) -> bool:
        from ansible.playbook.conditional import Conditional
        from ansible.template import Templar

        variables = self.host_vars(host)
        conditional = Conditional(loader=self.loader)
        conditional.when = task["when"] if isinstance(task["when"], list) else [task["when"]]
        return conditional.evaluate_conditional(Templar(loader=self.loader, variables=variables), variables)

    def render(self, host: str, template: Path, extra: dict) -> str:
        from ansible.template import Templar

        return Templar(loader=self.loader, variables={**self.host_vars(host), **extra}).template(template.read_text())


def play_for(config: dict, tmp_path: Path) -> Play:
    _inventory, global_vars = run_loader(config, tmp_path)
    return Play(tmp_path / "host_inventory.yml", global_vars)


def test_the_loader_and_the_k3s_role_join_what_cpswap_sends(tmp_path):
    print(f"ocboot checkout {CHECKOUT} at {(CHECKOUT / '.upstream-commit').read_text().strip() if (CHECKOUT / '.upstream-commit').exists() else '?'}")
    result, config = complete(SEED_NODES, local=("192.168.0.244",), tmp_path=tmp_path)
    assert result.returncode == 0 and config is not None
    play = play_for(config, tmp_path)
    assert [h.name for h in play.inventory.groups["primary_master_node"].get_hosts()] == ["192.168.0.244"]
    assert sorted(h.name for h in play.inventory.groups["master_nodes"].get_hosts()) == ["192.168.0.239",
                                                                                       "192.168.0.243"]
    tasks = tasks_by_name()
    primary, new, survivor = "192.168.0.244", "192.168.0.239", "192.168.0.243"
    assert play.host_vars(primary).get("ansible_connection") != "local"
    assert play.when(primary, tasks["Init first server node"])
    assert play.when(primary, tasks["Init first server node/Copy K3s service file [HA]"])
    assert not play.when(primary, tasks["Init first server node/Copy K3s service file [Single]"])
    assert not play.when(primary, tasks["Start other server if any and verify status"])
    for host in (new, survivor):  # the join block runs on the new host and is re-applied to the survivor
        assert play.when(host, tasks["Start other server if any and verify status"]), host
        assert not play.when(host, tasks["Init first server node"])
    # "Verify that all server nodes joined" then waits for len(master_nodes) + 1 = 3 control-plane Nodes
    assert len(play.inventory.groups["master_nodes"].get_hosts()) + 1 == 3
    rendered = play.render(primary, CHECKOUT / "onecloud/roles/k3s/config/templates/config.yaml.j2",
                           {"is_k3s_server": True, "join_as_host": True, "enable_lbagent": False})
    k3s_config = yaml.safe_load(rendered)
    assert k3s_config["node-ip"] == primary and k3s_config["tls-san"] == "192.168.0.66"
    assert k3s_config["flannel-backend"] == "none" and k3s_config["cluster-cidr"] == "10.40.0.0/16"


def test_the_old_shape_cannot_join_on_the_real_ocboot(tmp_path):
    """What cpswap sent before: primary {use_local: true} without node_ip, the new host alone."""
    _result, config = complete(SEED_NODES, local=("192.168.0.244",), tmp_path=tmp_path)
    assert config is not None
    primary = {k: v for k, v in config["primary_master_node"].items() if k not in ("hostname", "node_ip",
                                                                                   "host_networks")}
    old = {"primary_master_node": {**primary, "use_local": True},
           "master_nodes": {**config["master_nodes"], "hosts": config["master_nodes"]["hosts"][:1]}}
    play = play_for(old, tmp_path)
    tasks = tasks_by_name()
    local = play.host_vars("127.0.0.1")
    assert local["ansible_connection"] == "local"  # i.e. inside ocboot's container, not a survivor
    assert "node_ip" not in local
    assert not play.when("192.168.0.239", tasks["Start other server if any and verify status"])  # nothing joins
    assert not play.when("127.0.0.1", tasks["Init first server node/Copy K3s service file [HA]"])
    from ansible.errors import AnsibleUndefinedVariable

    with pytest.raises(AnsibleUndefinedVariable, match="node_ip"):
        play.render("127.0.0.1", CHECKOUT / "onecloud/roles/k3s/config/templates/config.yaml.j2",
                    {"is_k3s_server": True, "join_as_host": True, "enable_lbagent": False})
