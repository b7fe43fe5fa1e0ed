"""Enrichment quality benchmark: the scripted meetings of bench/enrichment_meetings/ go through the same code
as ``palaver enrich`` (the file reader, then a backend), and what comes out is compared with what each
meeting's script expects.

- Tasks: a predicted task matches an expected one when their descriptions' content words (stop words out,
  light stems) have a Dice coefficient >= 0.4; pairs are taken best first, one to one. Precision = matched /
  predicted, recall = matched / expected, over all meetings (micro); assignee and due-date accuracy are over
  the matched pairs (an empty assignee or no date is a value that must match too).
- Key points: a key point is covered when one line of the summary holds at least half of its content words.
  The summary is read within a length budget, so that length cannot buy coverage: the detailed summary's
  lines count while their words stay within 40% of the transcript's (DETAILED_SHARE), the brief's within 15%
  (BRIEF_SHARE); a line past the budget, and all after it, counts for nothing. A summary that pastes the
  transcript therefore covers only what its first 40% holds: column "paste", that baseline. "kept" and
  "bkept" are the summaries' words over the transcript's. Beside coverage, not instead of it, "+item" counts
  a key point also covered by one predicted action item's description, outside the budget: the task list's
  length is held in check by task precision, and a point said only as a request ("can you stub it behind a
  flag?") is carried by the task it became.

Meetings marked ``written_after_rules`` were written once the local backend's rules were done and were not
used to develop them; their figures are also given apart ("held out"), next to those of the meetings the
rules were developed on ("developed on").

Targets (enrichment issue): precision and recall >= 0.8, assignee and due-date accuracy >= 0.9, key-point
coverage >= 0.8, overall and on the held-out meetings alone (``meets_targets`` asks both)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.harness import OUT, write_results
from enrichment.backend import UnknownBackendError, backend_named
from enrichment.model import ActionItem, Enrichment
from enrichment.text import content_words, dice, words
from enrichment.transcript_file import parse_transcript
from palaver.settings import Settings

MEETINGS = Path(__file__).resolve().parent / "enrichment_meetings"
MATCH_SIMILARITY = 0.4
KEY_POINT_SHARE = 0.5
DETAILED_SHARE = 0.4  # of the transcript's words: the detailed summary's lines past this count for nothing
BRIEF_SHARE = 0.15  # the same for the brief
TARGETS = {"precision": 0.8, "recall": 0.8, "assignee_accuracy": 0.9, "due_date_accuracy": 0.9,
           "key_point_coverage": 0.8}  # fmt: skip


def match_tasks(predicted: list[dict[str, Any]], expected: list[dict[str, Any]]) -> list[tuple[int, int, float]]:
    """(predicted index, expected index, similarity) pairs, best first, each task in at most one pair."""
    pairs = sorted(((dice(set(content_words(p["description"])), set(content_words(e["description"]))), i, j)
                    for i, p in enumerate(predicted) for j, e in enumerate(expected)), reverse=True)  # fmt: skip
    used_p: set[int] = set()
    used_e: set[int] = set()
    out = []
    for similarity, i, j in pairs:
        if similarity < MATCH_SIMILARITY or i in used_p or j in used_e:
            continue
        used_p.add(i)
        used_e.add(j)
        out.append((i, j, round(similarity, 3)))
    return out


def covered(key_point: str, summary_lines: list[str]) -> bool:
    """Whether one summary line holds at least KEY_POINT_SHARE of the key point's content words."""
    wanted = set(content_words(key_point))
    return any(len(wanted & set(content_words(line))) >= KEY_POINT_SHARE * len(wanted) for line in summary_lines)


def within_budget(text: str, budget_words: float) -> list[str]:
    """The lines of a Markdown summary, markup stripped, read in order while their words fit ``budget_words``
    (the line that crosses the budget is left out, and so is everything after it)."""
    out, used = [], 0
    for line in text.splitlines():
        size = len(words(line))
        if used + size > budget_words:
            break
        used += size
        out.append(line.strip("-*# []"))
    return out


def _item(item: ActionItem) -> dict[str, Any]:
    return {"description": item.description, "assignee": item.assignee,
            "due_date": item.due_date.isoformat() if item.due_date else None}  # fmt: skip


def score_meeting(meeting: dict[str, Any], result: Enrichment) -> dict[str, Any]:
    predicted = [_item(i) for i in result.action_items]
    expected = meeting["expected"]["action_items"]
    pairs = match_tasks(predicted, expected)
    keys = meeting["expected"]["key_points"]
    transcript_words = sum(len(words(d["text"])) for d in meeting["dialogues"])
    brief_lines = within_budget(result.summary.brief, BRIEF_SHARE * transcript_words)
    lines = brief_lines + within_budget(result.summary.detailed, DETAILED_SHARE * transcript_words)
    pasted = within_budget("\n".join(d["text"] for d in meeting["dialogues"]), DETAILED_SHARE * transcript_words)
    return {
        "kind": meeting.get("kind", ""),
        "predicted": len(predicted), "expected": len(expected), "matched": len(pairs),
        "assignee_right": sum(predicted[i]["assignee"] == expected[j]["assignee"] for i, j, _ in pairs),
        "due_date_right": sum(predicted[i]["due_date"] == expected[j]["due_date"] for i, j, _ in pairs),
        "key_points": len(keys), "key_points_covered": sum(covered(k, lines) for k in keys),
        "key_points_in_brief": sum(covered(k, brief_lines) for k in keys),
        "key_points_in_pasted_transcript": sum(covered(k, pasted) for k in keys),
        "key_points_with_items": sum(covered(k, lines + [i["description"] for i in predicted]) for k in keys),
        "detailed_word_share": round(len(words(result.summary.detailed)) / max(transcript_words, 1), 3),
        "brief_word_share": round(len(words(result.summary.brief)) / max(transcript_words, 1), 3),
        "pairs": [{"predicted": predicted[i], "expected": expected[j], "similarity": s} for i, j, s in pairs],
        "unmatched_predicted": [p for i, p in enumerate(predicted) if i not in {a for a, _, _ in pairs}],
        "missed_expected": [e for j, e in enumerate(expected) if j not in {b for _, b, _ in pairs}],
    }  # fmt: skip


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def figures(row: dict[str, Any]) -> dict[str, float | None]:
    return {"precision": _ratio(row["matched"], row["predicted"]) if row["predicted"] else (1.0 if not row["expected"] else 0.0),
            "recall": _ratio(row["matched"], row["expected"]) if row["expected"] else 1.0,
            "assignee_accuracy": _ratio(row["assignee_right"], row["matched"]),
            "due_date_accuracy": _ratio(row["due_date_right"], row["matched"]),
            "key_point_coverage": _ratio(row["key_points_covered"], row["key_points"]),
            "brief_key_point_coverage": _ratio(row["key_points_in_brief"], row["key_points"]),
            "pasted_transcript_key_point_coverage": _ratio(row["key_points_in_pasted_transcript"], row["key_points"]),
            "key_point_coverage_with_items": _ratio(row["key_points_with_items"], row["key_points"])}  # fmt: skip


def run(backend_name: str, meetings_dir: Path = MEETINGS, settings: Settings | None = None) -> dict[str, Any]:
    """Scores of ``backend_name`` (configured from ``settings``, which a remote backend needs) on every
    meeting of ``meetings_dir``. A meeting a remote backend failed on and the local one enriched instead
    counts in ``fallbacks`` (and its row says why), so such figures are never taken for the remote's."""
    backend = backend_named(backend_name, settings)
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(meetings_dir.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        meeting = json.loads(text)
        result = backend.enrich(parse_transcript(text))
        rows[path.stem] = score_meeting(meeting, result)
        rows[path.stem]["fallback"] = result.fallback.model_dump() if result.fallback else None
        rows[path.stem]["held_out"] = bool(meeting.get("written_after_rules"))
        rows[path.stem]["figures"] = figures(rows[path.stem])
    total = _totals(rows.values())
    overall = figures(total)
    groups = {}
    for label, held_out in (("developed_on", False), ("held_out", True)):
        part = _totals(r for r in rows.values() if r["held_out"] == held_out)
        groups[label] = {"meetings": sum(r["held_out"] == held_out for r in rows.values()), "totals": part,
                         "figures": figures(part)}  # fmt: skip
    return {"backend": backend_name, "fallbacks": sum(r["fallback"] is not None for r in rows.values()),
            "match_similarity": MATCH_SIMILARITY, "key_point_share": KEY_POINT_SHARE,
            "detailed_share": DETAILED_SHARE, "brief_share": BRIEF_SHARE,
            "targets": TARGETS, "overall": overall, "totals": total, "groups": groups,
            "meets_targets": _meets(overall) and _meets(groups["held_out"]["figures"]),
            "meetings": rows}  # fmt: skip


def _meets(figures_: dict[str, float | None]) -> bool:
    return all(figures_[k] is not None and figures_[k] >= v for k, v in TARGETS.items())  # type: ignore[operator]


def _totals(rows: Any) -> dict[str, int]:
    rows = list(rows)
    keys = ("predicted", "expected", "matched", "assignee_right", "due_date_right", "key_points",
            "key_points_covered", "key_points_in_brief", "key_points_in_pasted_transcript",
            "key_points_with_items")  # fmt: skip
    return {k: sum(r[k] for r in rows) for k in keys}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*results["meetings"], "developed on", "held out", "overall"]
    series = [("precision", "tab:blue"), ("recall", "tab:orange"), ("assignee_accuracy", "tab:green"),
              ("due_date_accuracy", "tab:purple"), ("key_point_coverage", "tab:brown")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(13, 5.5))
    width = 0.16
    for k, (key, color) in enumerate(series):
        values = [_figures_of(results, n)[key] for n in names]
        ax.bar([i + (k - 2) * width for i in range(len(names))], [v if v is not None else 0 for v in values], width,
               label=f"{key.replace('_', ' ')} (target {results['targets'][key]})", color=color)  # fmt: skip
    ax.axhline(0.8, color="tab:gray", linestyle="--", linewidth=0.8)
    ax.axhline(0.9, color="tab:gray", linestyle=":", linewidth=0.8)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], rotation=20, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Enrichment quality, backend {results['backend']} (dashed 0.8, dotted 0.9)")
    ax.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _figures_of(results: dict[str, Any], name: str) -> dict[str, Any]:
    if name == "overall":
        return results["overall"]
    if name in ("developed on", "held out"):
        return results["groups"][name.replace(" ", "_")]["figures"]
    return results["meetings"][name]["figures"]


def _fmt(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench enrichment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--backend", default="local", help="enrichment backend to measure: local, openai or watsonx "
                        "(configured by the PALAVER_ENRICHMENT_* settings, as for palaver enrich; default local)")  # fmt: skip
    parser.add_argument("--meetings", type=Path, default=MEETINGS, help="folder of meeting JSON files")
    args = parser.parse_args(argv)
    try:
        results = run(args.backend, args.meetings, Settings())
    except UnknownBackendError as exc:
        print(f"palaver: {exc}", file=sys.stderr)
        return 2
    print(f"{'meeting':<22} {'tasks p/e/m':>11} {'prec':>5} {'rec':>5} {'assg':>5} {'due':>5} {'keys':>5} {'brief':>5} "
          f"{'paste':>5} {'+item':>5} {'kept':>5} {'bkept':>5}")  # fmt: skip
    for name, row in results["meetings"].items():
        f = row["figures"]
        name = f"{name}{' *' if row['held_out'] else ''}"
        print(f"{name:<22} {row['predicted']:>3}/{row['expected']:>3}/{row['matched']:>3} {_fmt(f['precision']):>5} "
              f"{_fmt(f['recall']):>5} {_fmt(f['assignee_accuracy']):>5} {_fmt(f['due_date_accuracy']):>5} "
              f"{_fmt(f['key_point_coverage']):>5} {_fmt(f['brief_key_point_coverage']):>5} "
              f"{_fmt(f['pasted_transcript_key_point_coverage']):>5} {_fmt(f['key_point_coverage_with_items']):>5} "
              f"{row['detailed_word_share']:>5.2f} "
              f"{row['brief_word_share']:>5.2f}")  # fmt: skip
    rows = [("developed on", results["groups"]["developed_on"]["figures"], results["groups"]["developed_on"]["totals"]),
            ("held out *", results["groups"]["held_out"]["figures"], results["groups"]["held_out"]["totals"]),
            ("overall", results["overall"], results["totals"])]  # fmt: skip
    for label, o, t in rows:
        print(f"{label:<22} {t['predicted']:>3}/{t['expected']:>3}/{t['matched']:>3} {_fmt(o['precision']):>5} "
              f"{_fmt(o['recall']):>5} {_fmt(o['assignee_accuracy']):>5} {_fmt(o['due_date_accuracy']):>5} "
              f"{_fmt(o['key_point_coverage']):>5} {_fmt(o['brief_key_point_coverage']):>5} "
              f"{_fmt(o['pasted_transcript_key_point_coverage']):>5} {_fmt(o['key_point_coverage_with_items']):>5}")  # fmt: skip
    print(f"(* written after the rules, not used to develop them; p/e/m: predicted, expected, matched tasks; keys and "
          f"brief: key points covered within the length budget ({DETAILED_SHARE:.0%} of the transcript's words for "
          f"the detailed summary, {BRIEF_SHARE:.0%} for the brief); paste: the same for the transcript itself cut "
          f"at {DETAILED_SHARE:.0%}; +item: keys, or one action item's description; kept, bkept: detailed and brief "
          f"summary words / transcript words)")  # fmt: skip
    for label, o in (("overall", results["overall"]), ("held out", results["groups"]["held_out"]["figures"])):
        for key, target in TARGETS.items():
            value = o[key]
            print(f"  {label} {key.replace('_', ' ')}: {_fmt(value)} (target >= {target}) "
                  f"{'ok' if value is not None and value >= target else 'MISSED'}")  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    name = "enrichment" if args.backend == "local" else f"enrichment-{args.backend}"  # each backend its own files
    png = OUT / f"{name}.png"
    plot(results, png)
    if results["fallbacks"]:
        failed = ", ".join(f"{name} ({row['fallback']['reason']})" for name, row in results["meetings"].items() if row["fallback"])
        print(f"FALLBACKS: {results['fallbacks']} meetings were enriched by the local backend, not {args.backend}: {failed}")
    print(f"meets targets: {results['meets_targets']}; wrote {write_results(name, results)} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
