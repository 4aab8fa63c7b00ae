"""Pure DAG helpers shared by every family: cycle detection and topological order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def find_cycle(parents: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A cycle as a path ``[a, b, ..., a]`` if the graph has one, else None.

    ``parents`` maps every node to the nodes it depends on. Iterative, so a chain of 100,000
    tasks does not hit Python's recursion limit.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(parents, WHITE)
    for root in parents:
        if colour[root] != WHITE:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        colour[root] = GREY
        while stack:
            node, i = stack[-1]
            edges = parents.get(node, ())
            if i < len(edges):
                stack[-1] = (node, i + 1)
                nxt = edges[i]
                state = colour.get(nxt, BLACK)  # unknown names are reported elsewhere
                if state == GREY:
                    path = [n for n, _ in stack]
                    return [*path[path.index(nxt) :], nxt]
                if state == WHITE:
                    colour[nxt] = GREY
                    stack.append((nxt, 0))
            else:
                colour[node] = BLACK
                stack.pop()
    return None
