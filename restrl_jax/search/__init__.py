"""Line-level MCTS over code (docs/method.md §5, §7): batched trees as fixed-size arrays, jitted."""
from restrl_jax.search.select import LeafPlan, Path, child_uct, path, plan_leaves, select
from restrl_jax.search.targets import (ValueTargets, expansions_for_budget, sample_budget,
                                       value_target_lists, value_targets)
from restrl_jax.search.tree import (NO_NODE, ROOT, Tree, capacity_for, init_tree, node_value,
                                    values)
from restrl_jax.search.update import (Inserted, add_children, backup, backup_from_children,
                                      reuse_terminal_value)

__all__ = [
    "NO_NODE", "ROOT", "Inserted", "LeafPlan", "Path", "Tree", "ValueTargets", "add_children",
    "backup", "backup_from_children", "capacity_for", "child_uct", "expansions_for_budget",
    "init_tree", "node_value", "path", "plan_leaves", "reuse_terminal_value", "sample_budget",
    "select", "value_target_lists", "value_targets", "values",
]
