"""Pulumi components of cpswap: thin wiring of the pure core's slot specs into resources."""
from components.control_plane import ControlPlane, ControlPlaneArgs, SecretInputs

__all__ = ["ControlPlane", "ControlPlaneArgs", "SecretInputs"]
