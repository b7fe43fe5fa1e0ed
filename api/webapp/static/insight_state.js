// Which enrichment result a page shows and the detailed summary being written, as plain functions and
// classes of data (no DOM): insights.js draws them; tests/unit/test_insight_state.py runs them in Node.

// A result as GET .../insights answers it or as an "insights" message carries it, in one shape.
export function normalized(result) {
  const summary = result.summary || { brief: result.summary_brief || "", detailed: result.summary_detailed || "" };
  return { ...result, summary };
}

// Whether result b should replace a (the one shown): a newer revision of the same run, or a newer result of
// another run (what GET .../insights shows by default).
export function replaces(a, b) {
  if (!a) return true;
  if (a.run === b.run) return b.revision >= a.revision;
  return b.produced_at_ms > a.produced_at_ms;
}

// The detailed summary being written, from its pieces: those of one enrichment_id, in seq order, from the
// last reset on; null while a piece is missing (a page that joined mid-way waits for the result).
export class SummaryPieces {
  constructor() { this.reset(null); }

  reset(enrichmentId) {
    this.enrichmentId = enrichmentId;
    this.parts = new Map();
    this.from = 0;
  }

  add(piece) {
    if (piece.enrichment_id !== this.enrichmentId) this.reset(piece.enrichment_id);
    if (piece.reset) this.from = Math.max(this.from, piece.seq);
    this.parts.set(piece.seq, piece.text);
  }

  text() {
    if (!this.parts.has(this.from)) return null;
    let out = "";
    for (let seq = this.from; this.parts.has(seq); seq++) out += this.parts.get(seq);
    return out;
  }
}
