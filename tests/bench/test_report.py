"""ember.bench.report: the table's columns, ops/period among them, from a result made by hand (no model runs)."""

from ember.bench.report import add_ratios, markdown_table, pick_reference

META = {"device": "CPU", "dtype": "float32", "compile": False, "compile_periods": None, "batch": 1, "steps": 1,
        "warmup": 0, "decode_tokens": 2, "peak_mem_method": "rss"}


def _row(variant: str, tokens_per_s: float, ops: float) -> dict:
    return {"variant": variant, "context": 64, "params": 2_000_000, "train_tokens_per_s": tokens_per_s,
            "train_peak_mem_bytes": 2**20, "decode_ms_median": 1.5, "decode_tokens_per_s": 600.0,
            "state_bytes": 4096, "ops_per_period": ops}


def test_table_has_the_ops_per_period_column_and_says_what_it_counts():
    variants = {"nml_pm_em": {"backbone": "NMLBackbone", "window": 16},
                "transformer": {"backbone": "TransformerBackbone", "window": None}}
    rows = [_row("nml_pm_em", 1000.0, 1322.0), _row("transformer", 2000.0, 0.0)]
    reference = pick_reference(variants)
    add_ratios(rows, reference)
    table = markdown_table({"meta": META, "rows": rows, "reference": reference})
    header, rule, mem, transformer = table.splitlines()[2:6]
    assert header.endswith("| params | ops/period |") and rule.count("|---") == header.count("|") - 1
    assert mem.endswith("| 2.00M | 1,322 |") and "| 0.50 |" in mem  # half the reference's training tokens/s
    assert transformer.endswith("| 2.00M | 0 |")  # no slot memories: 0, not an empty cell
    assert "summed over the model's slot memories (0: none)" in table


def test_a_row_without_the_count_reads_a_dash():
    row = _row("old", 1000.0, 0.0)
    del row["ops_per_period"]  # e.g. a bench.json written before the column existed
    assert markdown_table({"meta": META, "rows": [row], "reference": None}).splitlines()[4].endswith("| - |")
