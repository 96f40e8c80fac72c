"""Text moderation: per-category recall on the evasion list and false positives on ordinary
school sentences, with the time one scan takes.

The lists are the ones the tests assert on (``tests/security/evasion_corpus.py``): evasions of
each technique found in issue #15 applied to terms of every category, beside the techniques that
already worked, and ordinary school and shop sentences in English and Chinese (names such as 夏雨,
Scunthorpe, assassin bug, shuttlecock, 停车坐爱枫林晚). Recall counts an evasion as found when
the scan reports its category; the strict school policy blocks or reviews every category the
scan reports at these weights (the test asserts the verdicts).

    .venv/bin/python bench/moderation_text.py
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moderation import text
from tests.security.evasion_corpus import EVASIONS, ORDINARY


def main() -> None:
    text.lexicon()
    found: dict[str, list[bool]] = defaultdict(list)
    for value, category in EVASIONS:
        found[category].append(category in {m.category for m in text.scan_text(value)})
    for category in sorted(found):
        hits = found[category]
        print(f"recall_{category}={sum(hits) / len(hits):.3f} n={len(hits)}")
    flagged = [value for value in ORDINARY if text.scan_text(value)]
    for value in flagged:
        print(f"false_positive: {value!r}")
    start = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for value in ORDINARY:
            text.scan_text(value)
    per_scan_us = (time.perf_counter() - start) / (rounds * len(ORDINARY)) * 1e6
    overall = sum(sum(h) for h in found.values()) / sum(len(h) for h in found.values())
    print(
        f"evasion_recall={overall:.3f} evasions={len(EVASIONS)} "
        f"false_positive_rate={len(flagged) / len(ORDINARY):.3f} ordinary={len(ORDINARY)} "
        f"scan_us={per_scan_us:.0f}"
    )


if __name__ == "__main__":
    main()
