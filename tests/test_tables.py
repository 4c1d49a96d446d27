"""The figures table of BENCHMARKS.md, generated from the suite's JSON (``loadtest.tables``)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from loadtest import tables
from loadtest.harness import judged

pytestmark = pytest.mark.pure

PROSE_BEFORE = "# Benchmarks\n\nHow the suite runs.\n\n"
PROSE_AFTER = "\n\nHow to read it: the prose stays.\n"
STALE_REGION = f"{tables.BEGIN}\n| scenario | figure |\n|---|---|\n| old | 1 |\n{tables.END}"


def results() -> dict[str, Any]:
    """A small results document as ``loadtest.bench --json`` writes it: one target met, one
    missed with a ratio to its ceiling, one that the run's sizes could not judge."""
    rows = [
        (
            "storm",
            judged("min delivery completeness", 100.0, "100 %", True, unit="%"),
        ),
        (
            "gift path, fsync always",
            judged(
                "gifts/s acked (max)",
                5434.2,
                ">= 30 % of bare script (28,785/s)",
                False,
                ratio=0.1888,
                unit="gifts/s",
            ),
        ),
        ("fanout", judged("frames/s delivered, 20 viewers", None, ">= 90 % of bare loop (0)", None)),
        ("battle", judged("round 0 battle: scores (sum of |difference|)", 0, "0", True)),
    ]
    return {
        "benchmark": "loadtest.bench",
        "date": "2026-11-30T05:00:00+00:00",
        "command": "python -m loadtest.bench --json docs/bench/results.json",
        "commit": "abc1234",
        "machine": "2 CPUs (AMD EPYC), x86_64, Linux 6.18, Python 3.11.7",
        "quick": False,
        "engine_version": "valkey 8.1.8",
        "wall_seconds": {"total": 612.4},
        "summary": [{"scenario": scenario, **target} for scenario, target in rows],
    }


def write(tmp_path: Path, document: dict[str, Any], region: str = STALE_REGION) -> tuple[Path, Path]:
    source, doc = tmp_path / "results.json", tmp_path / "BENCHMARKS.md"
    source.write_text(json.dumps(document))
    doc.write_text(PROSE_BEFORE + region + PROSE_AFTER)
    return source, doc


def test_the_table_shows_every_target_met_missed_or_unjudged_with_the_run_it_came_from() -> None:
    region = tables.render(results(), "docs/bench/results.json")
    lines = region.splitlines()
    assert lines[0] == tables.BEGIN and lines[-1] == tables.END
    assert (
        "Run 2026-11-30 05:00 UTC at commit `abc1234` on 2 CPUs (AMD EPYC), x86_64, Linux 6.18, "
        "Python 3.11.7, valkey 8.1.8, 612.4 s in all:" in lines
    )
    assert "python -m loadtest.bench --json docs/bench/results.json" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| scenario")]
    assert rows == [
        "| storm | min delivery completeness | 100 % | 100 % | — | yes |",
        "| gift path, fsync always | gifts/s acked (max) | 5,434 gifts/s | ≥ 30 % of bare script (28,785/s) "
        "| 18.9 % | **no** |",
        "| fanout | frames/s delivered, 20 viewers | — | ≥ 90 % of bare loop (0) | — | — |",
        "| battle | round 0 battle: scores (sum of \\|difference\\|) | 0 | 0 | — | yes |",
    ]
    assert "2 of 3 judged targets met. 1 could not be judged at this run's sizes (—)." in lines


def test_a_quick_run_says_its_figures_mean_nothing() -> None:
    document = results()
    assert "--quick" not in tables.render(document, "x.json")
    document["quick"] = True
    assert "A `--quick` run" in tables.render(document, "x.json")


def test_the_region_is_rewritten_between_the_markers_and_check_fails_on_a_stale_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, doc = write(tmp_path, results())
    assert tables.main([str(source), "--doc", str(doc), "--check"]) == 1
    assert "is not current" in capsys.readouterr().err
    assert "| old | 1 |" in doc.read_text(), "--check rewrote the document"

    assert tables.main([str(source), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert text == PROSE_BEFORE + tables.render(results(), source.as_posix()) + PROSE_AFTER
    assert tables.main([str(source), "--doc", str(doc), "--check"]) == 0

    # A new run with another figure makes the document stale again.
    rerun = copy.deepcopy(results())
    rerun["summary"][1]["value"] = 6000.0
    source.write_text(json.dumps(rerun))
    assert tables.main([str(source), "--doc", str(doc), "--check"]) == 1
    assert doc.read_text() == text


def test_results_in_the_old_format_are_refused_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = results()
    del old["commit"], old["machine"], old["command"]
    source, doc = write(tmp_path, old)
    assert tables.main([str(source), "--doc", str(doc)]) == 2
    assert "no commit, machine, command" in capsys.readouterr().err
    assert doc.read_text() == PROSE_BEFORE + STALE_REGION + PROSE_AFTER

    # A summary row of the old format (a ceiling, no unit) is refused too.
    old = results()
    old["summary"][0] = {"scenario": "storm", "figure": "f", "value": 1.0, "unit": "%", "ceiling": None}
    source, doc = write(tmp_path, old)
    assert tables.main([str(source), "--doc", str(doc)]) == 2
    assert "a summary row has the keys" in capsys.readouterr().err


def test_a_document_without_both_markers_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, doc = write(tmp_path, results(), region=tables.BEGIN + "\nno end marker\n")
    assert tables.main([str(source), "--doc", str(doc)]) == 2
    assert "tables:end" in capsys.readouterr().err


def test_the_committed_benchmarks_page_shows_the_committed_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """BENCHMARKS.md's table is what docs/bench/results.json gives: a new run committed
    without regenerating the page (or the page edited by hand) fails here."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert tables.main(["docs/bench/results.json", "--check"]) == 0
