"""The trainer's shared vocabulary: the ignore label and the group table (name <-> code).

``IGNORE_INDEX`` is the wire contract's (``server.schemas``): one definition for the service,
the trainer and the data. ``Group`` is the one table of group codes: the uncertainty groups of
section III-B (``partition`` writes LOW / MEDIUM / HIGH) and the groups a labeled pixel was
queried from (the label bank stores the code per pixel, ``IGNORE_INDEX`` where unlabeled).
The names are the wire's group names (``server.schemas.GROUPS``) plus ``low``.
"""

from __future__ import annotations

from enum import IntEnum

from server.schemas import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "Group", "GROUP_CODES"]


class Group(IntEnum):
    """Group codes, stored as uint8 in group maps and in the label bank."""

    LOW = 0  # G_l: confident pixels (pseudo labels, class centres)
    MEDIUM = 1  # G_m
    HIGH = 2  # G_h
    RANDOM = 3
    ENTROPY = 4
    RIPU = 5
    OTHER = 6

    @property
    def label(self) -> str:
        """The group's wire name (``"high"``, ``"medium"``, ...)."""
        return self.name.lower()


# name -> code, in code order
GROUP_CODES: dict[str, int] = {g.label: int(g) for g in Group}
