"""Node ids and menu category: one short prefix for every node id of the pack."""

PREFIX = "DDE_"
CATEGORY = "differential edit"


def node_id(name: str) -> str:
    return PREFIX + name
