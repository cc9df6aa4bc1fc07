"""`--write-docs`: a benchmark's printed output replaces its generated block in the results page, dated, with the
machine and the command; the prose around it and the other blocks stay as they are."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import docs_results  # noqa: E402

PAGE = """# Results

## bench_a.py — first

What the figures mean.

## bench_b.py — second

Prose of b.
"""


def test_a_block_is_added_under_its_section_then_replaced_in_place(tmp_path: Path, monkeypatch, capsys) -> None:
    page = tmp_path / "results.md"
    page.write_text(PAGE)
    for figure in ("1.25×", "1.50×"):
        monkeypatch.setattr(sys, "argv", ["benchmarks/bench_a.py", "--quick", "--write-docs"])
        with docs_results.recorded("bench_a.py", page):
            print(f"ratio {figure}")
        assert sys.argv == ["benchmarks/bench_a.py", "--quick"]  # the flag is the recorder's, not the benchmark's
    text = page.read_text()
    assert text.count("<!-- generated: bench_a.py -->") == 1 and "ratio 1.50×" in text and "ratio 1.25×" not in text
    assert "What the figures mean." in text and "Prose of b." in text
    assert text.index("<!-- generated: bench_a.py -->") < text.index("## bench_b.py")
    assert "by `python benchmarks/bench_a.py --quick`" in text and " UTC on " in text and " cores" in text
    assert "ratio 1.50×" in capsys.readouterr().out  # still printed to the terminal


def test_without_the_flag_nothing_is_written(tmp_path: Path, monkeypatch) -> None:
    page = tmp_path / "results.md"
    page.write_text(PAGE)
    monkeypatch.setattr(sys, "argv", ["bench_a.py"])
    with docs_results.recorded("bench_a.py", page):
        print("ratio 2×")
    assert page.read_text() == PAGE


def test_a_section_the_page_lacks_is_added_at_the_end() -> None:
    out = docs_results.replace_block(PAGE, "bench_c.py", "<!-- generated: bench_c.py -->\nx\n<!-- end generated: bench_c.py -->\n")
    assert out.startswith(PAGE.rstrip("\n")) and out.rstrip().endswith("<!-- end generated: bench_c.py -->") and "## bench_c.py" in out


def test_every_benchmark_records_its_output() -> None:
    for path in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        assert f'recorded("{path.name}")' in path.read_text(), f"{path.name} does not run under docs_results.recorded"
