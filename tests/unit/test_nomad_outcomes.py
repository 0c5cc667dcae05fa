"""hrwsi.backends.nomad.outcomes: how an allocation ended, why an evaluation waits."""

from __future__ import annotations

from hrwsi.backends.nomad.outcomes import describe_placement_failure


def test_placement_failures_read_like_nomads():
    metric = {"NodesEvaluated": 2, "NodesExhausted": 2, "DimensionExhausted": {"memory": 2},
              "ConstraintFiltered": {}, "NodesInPool": 2}
    assert describe_placement_failure({"hrwsi": metric}) == "Resources exhausted on 2 nodes: memory"
    filtered = {"NodesEvaluated": 3, "NodesExhausted": 0, "ConstraintFiltered": {"${node.unique.name} = w9": 3}}
    assert describe_placement_failure({"hrwsi": filtered}) == 'Constraint "${node.unique.name} = w9" filtered 3 nodes'
    assert "no ready, eligible node" in describe_placement_failure({"hrwsi": {"NodesEvaluated": 0}})
    assert describe_placement_failure(None) == ""
