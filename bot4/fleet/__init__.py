"""Beyond one host: breakers, kill switch and risk exposure shared by a fleet through Redis."""

from bot4.fleet.link import FleetLink
from bot4.fleet.policy import FleetPolicy

__all__ = ["FleetLink", "FleetPolicy"]
