"""The run summary table: rows of every stage in one table, a column order independent of how a
stage's result dict was ordered (a resumed run reads DONE.json back with sorted keys)."""
from restrl_jax.pipeline.summary import render


def test_summary_table_rows_and_facts():
  text = render({
      "warmstart": {"rows": [{"method": "base", "strict_accuracy": 0.25, "pass@5": 0.5}],
                    "num_problems": 200},
      "decode": {"rows": [{"method": "vm_mcts", "test_case_average": 0.4, "budget": 20}]},
  })
  lines = text.splitlines()
  assert lines[2] == "| method | strict_accuracy | test_case_average | budget | pass@5 |"
  assert lines[4] == "| base | 0.250 |  |  | 0.500 |"
  assert lines[5] == "| vm_mcts |  | 0.400 | 20 |  |"
  assert "| warmstart | num_problems=200 |" in lines


def test_summary_column_order_does_not_depend_on_key_order():
  row = {"method": "base", "strict_accuracy": 0.2, "test_case_average": 0.3, "pass@1": 0.2,
         "benchmark": "synthetic"}
  shuffled = dict(sorted(row.items()))
  assert render({"s": {"rows": [row]}}) == render({"s": {"rows": [shuffled]}})
