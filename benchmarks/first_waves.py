"""How a burst's first wave reaches vLLM's engine, from every committed burst's per-request engine timings.

A burst (`serveplan bench --concurrency C --num-requests C`, sessions 10-13) sends C prompts of L tokens at once to a
vLLM 0.26.0 server run with --enable-per-request-metrics, so each request records when the engine first scheduled
it and when its first token came. Per burst this prints:
- whether the first prompt ran alone (its first token came before every other's);
- its engine prefill (scheduled to first token) and the second step's prompts: how many were scheduled with the
  step after it and how long after the first (their count over that time is the API server's hand-over per request);
- "late": the first prompt's engine prefill more than 3x the shortest of its server's bursts at the same prompt
  length. In that mode every step's first tokens reached the client one step late (docs/accuracy.md, session 13).

    python benchmarks/first_waves.py              # every burst, then the summary
    python benchmarks/first_waves.py --markdown

CPU only, from the committed files; nothing here is fitted. The simulation models the lone first prompt
(simulation._ReplicaSim.HANDOVER_S), not the hand-over time or the late mode.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from decode_steps import SERVERS, _read  # noqa: E402  (benchmarks/: the burst folders and their reader)

LATE_FACTOR = 3.0  # the first prompt's engine prefill against the shortest at its server and prompt length
SAME_STEP_MS = 3.0  # first tokens this close together came out of one step


@dataclass(frozen=True)
class Wave:
    burst: str  # results folder / file stem
    clients: int
    prompt: int
    lone_first: bool  # the first prompt's first token came before every other's
    first_prefill_ms: float  # its engine time from scheduling to first token
    second_step: int  # prompts scheduled with the step after the first prompt's
    second_after_ms: float  # ... that many ms after the first prompt was scheduled
    budget: int  # the server's max_num_batched_tokens (its meta.json)
    late: bool = False

    @property
    def server(self) -> str:
        return self.burst.rsplit("/", 1)[0]

    @property
    def handover_ms(self) -> float | None:
        """The API server's time per request: prompts that reached the engine before the second step was scheduled,
        over that time. Only where the step's token budget did not decide how many it took: prompts of at most 512
        tokens, and a step that had room for another."""
        full = self.prompt > 512 or (self.second_step + 1) * self.prompt > self.budget
        return None if full or self.second_step == 0 else self.second_after_ms / self.second_step


def waves(folders: list[Path] | None = None) -> list[Wave]:
    out = []
    for folder in folders or SERVERS:
        if not (folder / "meta.json").exists():  # a server that did not run (session 10's D70A)
            continue
        budget = json.loads((folder / "meta.json").read_text())["max_num_batched_tokens"]
        for path in sorted(folder.glob("burst-c*-l*.json*")):
            c, L = map(int, re.match(r"burst-c(\d+)-l(\d+)", path.name).groups())
            rs = [r for r in _read(path)["requests"] if r.get("ok") and r.get("server_prefill_ms") is not None]
            if len(rs) < 2:
                continue
            first_token = {id(r): r["start_s"] * 1000 + r["ttft_ms"] for r in rs}
            scheduled = {id(r): first_token[id(r)] - r["server_prefill_ms"] for r in rs}
            r0 = min(rs, key=lambda r: r["start_s"])
            others = [r for r in rs if r is not r0]
            lone = all(first_token[id(r)] > first_token[id(r0)] + SAME_STEP_MS for r in others)
            after = sorted(scheduled[id(r)] - scheduled[id(r0)] for r in others)
            second = [a for a in after if a - after[0] <= SAME_STEP_MS]
            stem = path.name.split(".json")[0]
            out.append(Wave(f"{folder.parent.name}/{folder.name}/{stem}", c, L, lone, r0["server_prefill_ms"],
                            len(second), after[0], budget))
    shortest: dict[tuple[str, int], float] = {}
    for w in out:
        shortest[(w.server, w.prompt)] = min(shortest.get((w.server, w.prompt), float("inf")), w.first_prefill_ms)
    return [replace(w, late=w.first_prefill_ms > LATE_FACTOR * shortest[(w.server, w.prompt)]) for w in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    ws = waves()
    head = ("burst", "C", "prompt", "first alone", "its engine prefill ms", "second step", "scheduled after ms",
            "hand-over ms", "late")
    rows = [(w.burst, w.clients, w.prompt, "yes" if w.lone_first else "no", f"{w.first_prefill_ms:.0f}",
             w.second_step, f"{w.second_after_ms:.0f}", f"{w.handover_ms:.1f}" if w.handover_ms else "-",
             "late" if w.late else "") for w in ws]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|" + "---:|" * (len(head) - 1))
        for r in rows:
            print("| " + " | ".join(map(str, r)) + " |")
    else:
        for r in [head, *rows]:
            print(f"{r[0]:<40} " + " ".join(f"{x!s:>12}" for x in r[1:]))
    on_time = [w for w in ws if not w.late]
    hand = [w.handover_ms for w in on_time if w.handover_ms]
    print(f"\n{len(ws)} bursts: the first prompt ran alone in {sum(w.lone_first for w in ws)}; late mode in "
          f"{sum(w.late for w in ws)} ({', '.join(w.burst for w in ws if w.late)}). On time: the second step was "
          f"scheduled {statistics.median(w.second_after_ms for w in on_time):.0f} ms (median; "
          f"{min(w.second_after_ms for w in on_time):.0f}-{max(w.second_after_ms for w in on_time):.0f}) after the "
          f"first prompt, with {statistics.median(w.second_step for w in on_time):.0f} prompts; where it was not "
          f"full, {statistics.median(hand):.1f} ms per prompt ({min(hand):.1f}-{max(hand):.1f}, {len(hand)} bursts).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
