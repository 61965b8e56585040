"""The run report at the tutorial's 10 classes and at all 365: the terminal table, and the HTML page's per-class
table (worst first, every class, a search box), most confused pairs, class-count plot and drift section."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from components.evaluator.results import EvaluationSummary, ModelEvaluation
from components.validation_gate.drift import ClassShare, DriftResult, FeatureDrift
from data_schema import EVAL_SPLIT, TRAIN_SPLIT, TUTORIAL_CLASSES, display_name, places365_categories
from pipeline.report import RunRecord, SplitStatistics, terminal_summary, write_report


def record_for(class_names: tuple[str, ...], with_top5: bool = True) -> RunRecord:
    """A finished run over `class_names`: class i > 0 has 4 eval images of which i % 5 are right, its wrong ones
    taken for class i + 1; class 0 has 10, of which 9 were taken for the last class."""
    count = len(class_names)
    confusion = np.zeros((count, count), dtype=int)
    for index in range(1, count):
        confusion[index, index] = index % 5
        confusion[index, (index + 1) % count] = 4 - index % 5
    confusion[0, 0], confusion[0, -1] = 1, 9
    accuracy = {name: confusion[i, i] / confusion[i].sum() for i, name in enumerate(class_names)}
    candidate = ModelEvaluation(
        accuracy=float(np.trace(confusion) / confusion.sum()), examples=int(confusion.sum()),
        top5_accuracy=0.9 if with_top5 else None, accuracy_by_class=accuracy,
        top5_accuracy_by_class={name: (0.75 if with_top5 else None) for name in class_names},
        examples_by_class={name: int(confusion[i].sum()) for i, name in enumerate(class_names)})
    return RunRecord(
        mlflow_run_id="r1", run_url="http://mlflow/r1", started="2026-01-01T00:00:00", outcome="registered",
        message="blessed", class_names=list(class_names), settings={"blessing metric": "top1"},
        statistics={TRAIN_SPLIT: SplitStatistics(16 * count, {name: 16 for name in class_names}, {}),
                    EVAL_SPLIT: SplitStatistics(4 * count, {name: 4 for name in class_names}, {})},
        evaluation=EvaluationSummary(candidate, None, True, []), confusion=confusion.tolist())


@pytest.fixture(scope="module")
def written_report(tmp_path_factory):
    """`write(classes)` -> the page of record_for(classes)'s report, written once for all tests of this module
    (at 365 classes the class-count plot takes seconds)."""
    pages: dict[tuple[str, ...], Path] = {}

    def write(classes: tuple[str, ...]) -> Path:
        if classes not in pages:
            pages[classes] = write_report(record_for(classes), tmp_path_factory.mktemp(f"report-{len(classes)}"))
        return pages[classes]
    return write


def table_order(page: str) -> list[str]:
    return re.findall(r'<tr data-key="([^"]+)">', page)


def test_at_365_classes_the_page_lists_every_class_worst_first_and_the_most_confused_pairs(written_report):
    classes = places365_categories()
    record = record_for(classes)
    page_path = written_report(classes)
    page = page_path.read_text()

    order = table_order(page)
    assert sorted(order) == sorted(classes)
    accuracies = [record.evaluation.candidate.accuracy_by_class[key] for key in order]
    assert accuracies == sorted(accuracies) and accuracies[0] == 0.0
    assert '<input type="search" id="class-filter"' in page
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="https?:', page)  # works from file://, offline

    assert "Most confused pairs" in page
    pairs = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td class=\"number\">(\d+)</td>"
                       r"<td class=\"number\">([^<]+)</td></tr>", page)
    assert len(pairs) == 20
    # Most images first, shares of the true class's own images; ties in the order of the class names.
    assert pairs[0] == (display_name(classes[0]), display_name(classes[-1]), "9", "90.0%")
    assert pairs[1] == (display_name(classes[5]), display_name(classes[6]), "4", "100.0%")
    assert [int(images) for _, _, images, _ in pairs[1:]] == [4] * 19
    assert "eval split" in page
    assert (page_path.parent / "class_counts.png").stat().st_size > 5000


def test_at_10_classes_the_page_has_no_pairs_list_and_says_why_top5_is_missing(tmp_path):
    page = write_report(record_for(TUTORIAL_CLASSES, with_top5=False), tmp_path).read_text()
    assert sorted(table_order(page)) == sorted(TUTORIAL_CLASSES)
    assert "Most confused pairs" not in page
    assert '<img src="confusion_matrix.png"' in page and (tmp_path / "confusion_matrix.png").stat().st_size > 5000
    assert "not computed with 5 classes or fewer" in page


def test_the_terminal_lists_every_class_up_to_30_and_the_ends_of_the_ranking_beyond():
    short = terminal_summary(record_for(TUTORIAL_CLASSES))
    for name in TUTORIAL_CLASSES:
        assert display_name(name) in short
    assert "top-5" in short and "75.0%" in short

    classes = places365_categories()
    long = terminal_summary(record_for(classes)).splitlines()
    assert len(long) < 30
    assert any("worst 10 and the best 5 of 365 classes" in line and "HTML report lists all 365" in line
               for line in long)
    body = [line for line in long if line.startswith(tuple(display_name(name) for name in classes))]
    assert len(body) == 15
    assert body[0].split()[-3] == "0.0%" and body[-1].split()[-3] == "100.0%"
    assert any(line.startswith("... 350 more") for line in long)
    assert long[-1].startswith("overall")


@pytest.mark.parametrize("classes", [TUTORIAL_CLASSES, places365_categories()], ids=["10", "365"])
def test_the_search_box_filters_by_display_name_and_by_key(written_report, classes):
    page = written_report(classes).read_text()
    assert "row.cells[0].textContent" in page and "row.dataset.key" in page
    assert f"{len(classes)} of {len(classes)} classes" in page


def drifted_record(class_names: tuple[str, ...]) -> RunRecord:
    """A run that went on (on_drift warn) though its first class doubled its share and the others lost a little."""
    even = 1 / len(class_names)
    first = min(2 * even, 0.5)
    rest = (1 - first) / (len(class_names) - 1)
    shares = [ClassShare(class_names[0], first, even)] + [ClassShare(name, rest, even) for name in class_names[1:]]
    drift = DriftResult(baseline="champion version 2's training data",
                        features=(FeatureDrift("brightness", "Jensen-Shannon divergence", 0.02, 0.1, False),
                                  FeatureDrift("category_name", "L-infinity distance", first - even, 0.08,
                                               first - even > 0.08)),
                        class_shares=tuple(shares), not_compared={"height": "previous data missing"})
    return RunRecord(mlflow_run_id="r2", run_url="http://mlflow/r2", started="2026-01-01T00:00:00",
                     outcome="registered", message="blessed", class_names=list(class_names), drift=drift)


def test_the_drift_section_marks_what_drifted_and_lists_every_class_at_10(tmp_path):
    page = write_report(drifted_record(TUTORIAL_CLASSES), tmp_path).read_text()
    section = page[page.index("<h2>Drift from the champion's data"):page.index("<h2>Training")]

    assert ('<tr class="drifted"><td>category_name</td><td>L-infinity distance</td><td class="number">0.100</td>'
            '<td class="number">0.08</td><td><span class="badge">drifted</span>') in section
    assert "<td>brightness</td><td>Jensen-Shannon divergence</td><td class=\"number\">0.020</td>" in section
    assert "not compared: previous data missing" in section and "the run went on" in section
    movers = re.findall(r"<tr><td>([^<]+)</td><td class=\"number\">([^<]+)</td><td class=\"number\">([^<]+)</td>"
                        r"<td class=\"number\">([^<]+)</td>", section)
    assert len(movers) == 10
    assert movers[0] == (display_name(TUTORIAL_CLASSES[0]), "20.00%", "10.00%", "+10.00 pt")
    summary = terminal_summary(drifted_record(TUTORIAL_CLASSES))
    assert ("drift from champion version 2's training data: category_name drifted (L-infinity distance 0.100 > 0.08)"
            "; pipeline.on_drift is warn, so the run went on") in summary


def test_at_365_classes_the_drift_section_lists_the_20_classes_that_moved_most(tmp_path):
    classes = places365_categories()
    page = write_report(drifted_record(classes), tmp_path).read_text()
    section = page[page.index("<h2>Drift from the champion's data"):page.index("<h2>Training")]

    assert "No drift past the thresholds from champion version 2&#39;s training data." in section
    assert "The 20 of 365 classes whose share of the train images moved most." in section
    movers = re.findall(r"<tr><td>([^<]+)</td><td class=\"number\">([^<]+)%</td>", section)
    assert len(movers) == 20 and movers[0] == (display_name(classes[0]), "0.55")
