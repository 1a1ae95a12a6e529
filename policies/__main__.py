"""cpswap CrossGuard pack: only builds the PolicyPack; the rules live in cpswap.core.rules."""
import os
import sys

try:
    from cpswap.policy_pack import PACK_NAME, policies
except ImportError:  # running from a checkout without the package installed in the pack's venv
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from cpswap.policy_pack import PACK_NAME, policies

from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
