"""docs/benchmarks.md's side-by-side part: the summary table, one section per figure, and where
sessionlsp is slower than opencode, with why.

Ratios are sessionlsp ÷ opencode of the medians measured in the same run: below 1.00x sessionlsp
takes less (time, memory), above 1.00x it delivers more (deltas per second).
"""

from __future__ import annotations

import collections
import inspect
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from bench import fig_acp, fig_cold, fig_crash, fig_long, fig_overlap, fig_stream, fig_turns
from bench.compare import Comparison
from bench.fake_provider import CLASSIFY_RULE
from bench.history import History
from bench.procs import CliRun
from bench.stats import Spread, ratio, spread

MIB = 1024.0


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    figure: str
    what: str
    ours: str
    peer: str
    ratio: str
    slower: str | None = None  # the key of the explanation when sessionlsp is worse here


def fill(text: str) -> str:
    return "\n\n".join(textwrap.fill(p, 96) for p in text.split("\n\n"))


def _constant(module: ModuleType, match: re.Match[str]) -> str:
    value = getattr(module, match.group(1))
    return f"{value:,}" if isinstance(value, int) else str(value)


def _method(module: ModuleType) -> str:
    """A figure module's docstring without its title line, as the section's method text;
    ``{NAME}`` stands for the module's constant ``NAME``."""
    doc = inspect.getdoc(module) or ""
    doc = re.sub(r"\{([A-Z_]+)\}", lambda m: _constant(module, m), doc)
    body = doc.split("\n\n", 1)[1] if "\n\n" in doc else ""
    paragraphs = []
    for block in body.split("\n\n"):
        if block.lstrip().startswith("* "):
            items = [" ".join(i.split()) for i in block.split("\n* ")]
            items = [i.removeprefix("* ") for i in items]
            paragraphs.append(
                "\n".join(
                    textwrap.fill(i, 96, initial_indent="- ", subsequent_indent="  ") for i in items
                )
            )
        else:
            paragraphs.append(textwrap.fill(" ".join(block.split()), 96))
    return "\n\n".join(paragraphs)


def _counts(values: Sequence[int]) -> str:
    """The count when every run agrees, else ``median (min-max)``."""
    if len(set(values)) == 1:
        return str(values[0])
    s = spread([float(v) for v in values])
    return f"{s.median:g} ({s.p10:g}-{s.p90:g})"


def _tally(answers: Sequence[str]) -> str:
    counted = collections.Counter(answers)
    return "; ".join(f"{n}x {answer}" for answer, n in sorted(counted.items()))


def _share(flags: Sequence[bool]) -> str:
    return f"{sum(flags)} of {len(flags)}"


def _slower_if(lower_is_better: bool, ours: Spread, peer: Spread, key: str) -> str | None:
    worse = ours.median > peer.median if lower_is_better else ours.median < peer.median
    return key if worse else None


# --- the figures ---------------------------------------------------------------------------------


def _cold_rows(c: fig_cold.Cold) -> list[Row]:
    ours = spread([r.answer_s * 1000 for r in c.sessionlsp])
    peer = spread([r.answer_s * 1000 for r in c.opencode])
    return [
        Row(
            "1",
            "cold start to first answer (new process, one-prompt session), ms",
            ours.show_n(0),
            peer.show_n(0),
            ratio(ours, peer),
            _slower_if(True, ours, peer, "cold"),
        )
    ]


def _cold_section(c: fig_cold.Cold) -> str:
    def line(name: str, runs: list[CliRun], kinds: dict[str, float]) -> str:
        answer = spread([r.answer_s * 1000 for r in runs])
        exited = spread([r.exit_s * 1000 for r in runs])
        requests = ", ".join(f"{k} {v:g}" for k, v in sorted(kinds.items()))
        return f"| {name} | {answer.show_n(0)} | {exited.show_n(0)} | {requests} |"

    return "\n".join(
        [
            "| system | spawn to answer on stdout, ms | spawn to exit, ms | provider requests "
            "per run |",
            "|---|---:|---:|---|",
            line("`sessionlsp chat MESSAGE`", c.sessionlsp, c.sessionlsp_requests),
            line("`opencode run MESSAGE`", c.opencode, c.opencode_requests),
        ]
    )


def _turn_rows(t: fig_turns.PerTurn) -> list[Row]:
    ours = spread([x.overhead_ms for x in t.sessionlsp])
    peer = spread([x.overhead_ms for x in t.opencode])
    return [
        Row(
            "2",
            f"per-turn overhead beyond the provider, {len(t.sessionlsp)} turns, ms",
            ours.show_n(1),
            peer.show_n(1),
            ratio(ours, peer),
            _slower_if(True, ours, peer, "turns"),
        )
    ]


def _turn_section(t: fig_turns.PerTurn) -> str:
    def line(name: str, turns: list[fig_turns.Turn]) -> str:
        wall = spread([x.wall_ms for x in turns])
        provider = spread([x.provider_ms for x in turns])
        overhead = spread([x.overhead_ms for x in turns])
        requests = spread([float(x.requests) for x in turns])
        return (
            f"| {name} | {wall.show_n(1)} | {provider.show(2)} | {overhead.show(1)} "
            f"| {requests.median:g} | {turns[0].context}-{turns[-1].context} |"
        )

    return "\n".join(
        [
            "| system | turn at the client, ms | provider's own time, ms | overhead, ms | "
            "requests per turn | messages sent per request (first-last turn) |",
            "|---|---:|---:|---:|---:|---:|",
            line("sessionlsp (`session/prompt`, stdio)", t.sessionlsp),
            line("opencode (`POST /session/{id}/message`)", t.opencode),
        ]
    )


def _long_rows(lg: fig_long.Long) -> list[Row]:
    rows = []
    for ours, peer in zip(lg.sessionlsp, lg.opencode, strict=True):
        a, b = spread(ours.turn_ms), spread(peer.turn_ms)
        rows.append(
            Row(
                "3",
                f"one turn in a session of {ours.messages:,} messages (compacted 20 ago), ms",
                a.show_n(1),
                b.show_n(1),
                ratio(a, b),
                _slower_if(True, a, b, "long"),
            )
        )
    first_ours, last_ours = spread(lg.sessionlsp[0].turn_ms), spread(lg.sessionlsp[-1].turn_ms)
    first_peer, last_peer = spread(lg.opencode[0].turn_ms), spread(lg.opencode[-1].turn_ms)
    rows.append(
        Row(
            "3",
            f"growth of the turn from {lg.sessionlsp[0].messages:,} to "
            f"{lg.sessionlsp[-1].messages:,} messages",
            ratio(last_ours, first_ours),
            ratio(last_peer, first_peer),
            "",
        )
    )
    return rows


def _long_section(lg: fig_long.Long) -> str:
    lines = [
        "| messages | sessionlsp turn, ms | vs smallest | opencode turn, ms | vs smallest | "
        "sessionlsp / opencode | messages sent to the model (s / o) | listing the history, ms "
        "(s / o) | seeding, s (s / o) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base_ours, base_peer = spread(lg.sessionlsp[0].turn_ms), spread(lg.opencode[0].turn_ms)
    for ours, peer in zip(lg.sessionlsp, lg.opencode, strict=True):
        a, b = spread(ours.turn_ms), spread(peer.turn_ms)
        lines.append(
            f"| {ours.messages:,} | {a.show_n(1)} | {ratio(a, base_ours)} | {b.show_n(1)} "
            f"| {ratio(b, base_peer)} | {ratio(a, b)} | {ours.context_messages} / "
            f"{peer.context_messages} | {ours.list_ms:,.0f} / {peer.list_ms:,.0f} "
            f"| {ours.seed_s:.1f} / {peer.seed_s:.1f} |"
        )
    return "\n".join(lines)


def _memory_rows(lg: fig_long.Long) -> list[Row]:
    ours, peer = lg.sessionlsp[-1], lg.opencode[-1]
    a, b = ours.memory.peak_kib / MIB, peer.memory.peak_kib / MIB
    return [
        Row(
            "7",
            f"peak RSS of the server after the {ours.messages:,}-message run, MiB",
            f"{a:,.0f}",
            f"{b:,.0f}",
            ratio(a, b),
            "memory" if a > b else None,
        )
    ]


def _memory_section(lg: fig_long.Long) -> str:
    lines = [
        "| messages in the session | sessionlsp peak RSS (VmHWM), MiB | opencode peak RSS "
        "(VmHWM), MiB | sessionlsp / opencode | RSS at the end, MiB (s / o) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for ours, peer in zip(lg.sessionlsp, lg.opencode, strict=True):
        a, b = ours.memory.peak_kib / MIB, peer.memory.peak_kib / MIB
        lines.append(
            f"| {ours.messages:,} | {a:,.0f} | {b:,.0f} | {ratio(a, b)} "
            f"| {ours.memory.rss_kib / MIB:,.0f} / {peer.memory.rss_kib / MIB:,.0f} |"
        )
    children = {r.memory.children for r in (*lg.sessionlsp, *lg.opencode)}
    note = (
        "Neither server had child processes running when it was measured."
        if children == {0}
        else "Child processes were running when measured (not included): "
        + ", ".join(str(c) for c in sorted(children))
    )
    return "\n".join(lines) + "\n\n" + note


def _overlap_rows(o: fig_overlap.Overlaps) -> list[Row]:
    def cell(runs: list[fig_overlap.Overlap]) -> str:
        requests = _counts([r.summary_requests for r in runs])
        markers = _counts([len(r.history.markers) for r in runs])
        orphans = _counts([r.history.orphan_markers for r in runs])
        return (
            f"{requests} summary request(s), {markers} marker(s), {orphans} orphan(s) "
            f"(n={len(runs)})"
        )

    ok = all(r.summary_requests == 1 and len(r.history.markers) == 1 for r in o.sessionlsp)
    return [
        Row(
            "4",
            f"overlapping triggers ({o.clients} manual + 1 automatic): summary requests the "
            "provider got, compaction markers left",
            cell(o.sessionlsp),
            cell(o.opencode),
            "-",
            None if ok else "overlap",
        )
    ]


def _history_cells(h: History) -> str:
    return (
        f"{len(h.markers)} | {h.completed} | {h.failed} | {h.unfinished} | {h.orphan_markers} "
        f"| {h.misbound}"
    )


def _overlap_section(o: fig_overlap.Overlaps) -> str:
    lines = [
        "| system | run | summary requests | markers | completed summaries | failed | "
        "unfinished | orphan markers | misbound summaries | the turn ended normally | "
        "manual calls answered |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, runs in (("sessionlsp", o.sessionlsp), ("opencode", o.opencode)):
        for i, r in enumerate(runs, 1):
            answers = _tally(r.manual)
            lines.append(
                f"| {name} | {i} | {r.summary_requests} | {_history_cells(r.history)} "
                f"| {'yes' if r.prompt_ok else 'no'} | {answers} |"
            )
    return "\n".join(lines)


def _crash_rows(c: fig_crash.Crashes) -> list[Row]:
    def cell(runs: list[fig_crash.Crash]) -> str:
        return (
            f"finished by itself {_share([r.finished_by_itself for r in runs])}; "
            f"{_counts([len(r.final.markers) for r in runs])} marker(s), "
            f"{_counts([r.summary_requests for r in runs])} summary requests; left "
            f"{_counts([r.final.unfinished for r in runs])} unfinished summary(ies), "
            f"{_counts([r.final.orphan_markers for r in runs])} orphan marker(s); answered "
            f"after: {_share([r.answered for r in runs])}"
        )

    ok = all(r.finished_by_itself and r.answered and not r.final.unfinished for r in c.sessionlsp)
    return [
        Row(
            "5",
            "crash mid-summary, restart, prompt (and compact again if still unfinished)",
            cell(c.sessionlsp),
            cell(c.opencode),
            "-",
            None if ok else "crash",
        )
    ]


def _crash_section(c: fig_crash.Crashes) -> str:
    lines = [
        "| system | run | right after the restart | completed without help | prompt answered "
        "| second compaction asked | markers | completed summaries | failed | unfinished | "
        "orphan markers | misbound summaries | summary requests |",
        "|---|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in (("sessionlsp", c.sessionlsp), ("opencode", c.opencode)):
        for i, r in enumerate(runs, 1):
            h = r.after_restart
            state = (
                f"{len(h.markers)} marker, {h.completed} completed / {h.failed} failed / "
                f"{h.unfinished} unfinished summary"
            )
            lines.append(
                f"| {name} | {i} | {state} | {'yes' if r.finished_by_itself else 'no'} "
                f"| {'yes' if r.answered else 'no'} | {'yes' if r.retried else 'no'} "
                f"| {_history_cells(r.final)} | {r.summary_requests} |"
            )
    return "\n".join(lines)


def _stream_rows(s: fig_stream.Streams) -> list[Row]:
    a = spread([x.deltas_per_s for x in s.sessionlsp])
    b = spread([x.deltas_per_s for x in s.opencode])
    ca = spread([float(x.commits) for x in s.sessionlsp])
    cb = spread([float(x.commits) for x in s.opencode])
    return [
        Row(
            "6",
            "deltas per second delivered, 20 000-token answer (prompt sent to last delta)",
            a.show_n(0),
            b.show_n(0),
            ratio(a, b),
            _slower_if(False, a, b, "stream"),
        ),
        Row(
            "6",
            "durable commits of the answer's text per answer",
            ca.show_n(0),
            cb.show_n(0),
            ratio(ca, cb),
            "commits" if ca.median > cb.median else None,
        ),
    ]


def _stream_section(s: fig_stream.Streams) -> str:
    def line(name: str, runs: list[fig_stream.Stream]) -> str:
        rate = spread([x.deltas_per_s for x in runs])
        first = spread([x.first_s * 1000 for x in runs])
        burst = spread([x.burst_per_s for x in runs])
        turn = spread([x.turn_s * 1000 for x in runs])
        deltas = sorted({x.deltas for x in runs})
        commits = spread([float(x.commits) for x in runs])
        matches = _share([x.matches for x in runs])
        return (
            f"| {name} | {rate.show_n(0)} | {first.show(0)} | {burst.show(0)} | {turn.show(0)} "
            f"| {', '.join(f'{d:,}' for d in deltas)} | {commits.show(0)} | {matches} |"
        )

    return "\n".join(
        [
            "| system | deltas/s, prompt to last delta | prompt to first delta, ms | deltas/s, "
            "first to last delta | prompt to answer, ms | deltas per answer | durable commits "
            "| joined deltas = the fake's text |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
            line("sessionlsp (`session/delta`)", s.sessionlsp),
            line("opencode (`message.part.delta` on `/event`)", s.opencode),
        ]
    )


def _acp_spreads(system: fig_acp.System) -> dict[str, Spread] | None:
    runs = system.runs
    if not runs:
        return None
    return {
        "init": spread([r.init_ms for r in runs]),
        "new": spread([r.new_ms for r in runs]),
        "chunk": spread([r.first_chunk_ms for r in runs]),
        "turn": spread([t for r in runs for t in r.turn_ms]),
        "overhead": spread([t for r in runs for t in r.overhead_ms]),
    }


def _acp_compact_cell(system: fig_acp.System) -> str:
    runs = system.runs
    if not runs:
        return "not measured"
    markers = [r.markers for r in runs]
    marker_text = (
        "n/a marker(s) (the ACP session id is not a session in its store)"
        if any(m is None for m in markers)
        else f"{_counts([m for m in markers if m is not None])} marker(s)"
    )
    requests = _counts([r.summary_requests for r in runs])
    return f"{requests} summary request(s), {marker_text} (n={len(runs)})"


def _acp_rows(a: fig_acp.Acp) -> list[Row]:
    ours, peer = _acp_spreads(a.sessionlsp), _acp_spreads(a.opencode)
    missing = "not measured (see figure 8)"
    what = {
        "init": "ACP: spawn to the `initialize` answer, ms",
        "new": "ACP: spawn to the `session/new` answer, ms",
        "chunk": "ACP: prompt to the first `agent_message_chunk`, ms",
        "overhead": f"ACP: per-turn overhead beyond the provider, {fig_acp.TURNS} turns a run, ms",
    }
    digits = {"init": 0, "new": 0, "chunk": 1, "overhead": 1}
    found = []
    for key, text in what.items():
        o = ours[key] if ours else None
        q = peer[key] if peer else None
        found.append(
            Row(
                "8",
                text,
                o.show_n(digits[key]) if o else missing,
                q.show_n(digits[key]) if q else missing,
                ratio(o, q) if o and q else "-",
                _slower_if(True, o, q, "acp") if o and q else None,
            )
        )
    ok = all(r.summary_requests == 1 and r.markers == 1 for r in a.sessionlsp.runs)
    found.append(
        Row(
            "8",
            f"ACP: {fig_acp.COMPACTS} concurrent `/compact` prompts on one session: summary "
            "requests the provider got, compaction markers left",
            _acp_compact_cell(a.sessionlsp),
            _acp_compact_cell(a.opencode),
            "-",
            None if ok or not a.sessionlsp.runs else "acp_compact",
        )
    )
    return found


def _acp_section(a: fig_acp.Acp) -> str:
    lines = [
        "| system | spawn to `initialize` answer, ms | spawn to `session/new` answer, ms | "
        "prompt to first `agent_message_chunk`, ms | turn at the client, ms | overhead, ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = (("`sessionlsp acp`", a.sessionlsp), ("`opencode acp`", a.opencode))
    for name, system in names:
        sp = _acp_spreads(system)
        if sp:
            lines.append(
                f"| {name} | {sp['init'].show_n(0)} | {sp['new'].show_n(0)} "
                f"| {sp['chunk'].show_n(1)} | {sp['turn'].show_n(1)} | {sp['overhead'].show_n(1)} |"
            )
    lines += [
        "",
        "| system | run | summary requests | markers | `/compact` answers |",
        "|---|---:|---:|---:|---|",
    ]
    for name, system in names:
        for i, r in enumerate(system.runs, 1):
            marker = "n/a" if r.markers is None else str(r.markers)
            lines.append(
                f"| {name} | {i} | {r.summary_requests} | {marker} | {_tally(r.compact_answers)} |"
            )
    for name, system in names:
        if system.error:
            lines.append(
                "\n"
                + fill(f"{name} could not be measured, so it has no figures here: {system.error}")
            )
    return "\n".join(lines)


# --- why sessionlsp is slower, where it is -------------------------------------------------------

WHY: dict[str, str] = {
    "cold": (
        "**Cold start.** `sessionlsp chat` is two Python processes: the chat client, then the "
        "`sessionlsp serve` it spawns, each paying interpreter start-up and imports (pygls and "
        "lsprotocol alone cost a bare pygls server most of its start-up; see the server section "
        "below). Fix: run the one-shot chat in-process (the Sidecar without the stdio hop), "
        "import pygls lazily, or keep a warm server."
    ),
    "turns": (
        "**Per-turn overhead.** A sessionlsp turn commits several SQLite transactions (prompt, "
        "reply, parts, step finish, each with its outbox event and a WAL fsync) and sends each "
        "event as a `session/sync` notification before the answer. Fix: fold the prompt and "
        "the reply's creation into one transaction, and the final parts with the finish."
    ),
    "long": (
        "**Long sessions.** sessionlsp builds the context from the last compaction on, so its "
        "turn should not grow with the session; a slower turn here is the fixed cost of a "
        "turn (figure 2), not the history."
    ),
    "memory": (
        "**Memory.** The server's peak is its interpreter, pygls and the reads of one turn; the "
        "history is never held whole except by `session/load`, which the benchmark calls only "
        "after reading the peak."
    ),
    "stream": (
        "**Streaming.** Each delta is one JSON-RPC notification framed and written by the "
        "asyncio loop of a Python process. Fix: coalesce deltas that arrive within a few "
        "milliseconds into one notification."
    ),
    "commits": (
        "**Durable commits.** sessionlsp writes the streamed text at most every 250 ms while it "
        "streams, and once at the end, so a crash loses at most 250 ms of an answer; opencode "
        "writes the text part when it starts and when it ends, so a crash mid-answer loses all "
        "of it (its deltas are not stored). The extra commits are the price of that guarantee "
        "and stay within the bound floor(turn / 250 ms) + 1; a longer flush interval would "
        "trade durability for fewer writes."
    ),
    "acp": (
        "**ACP front end.** `sessionlsp acp` is a Python process: interpreter start-up and "
        "imports come before the `initialize` answer, and each turn commits its SQLite "
        "transactions (figure 2) before the prompt is answered."
    ),
    "acp_compact": (
        "**Concurrent `/compact` over ACP.** sessionlsp left more than one marker or summary "
        "request: that breaks its one-active-compaction guarantee and is a bug to fix."
    ),
    "overlap": (
        "**Overlapping triggers.** sessionlsp left more than one marker or summary request: "
        "that breaks its one-active-compaction guarantee and is a bug to fix."
    ),
    "crash": (
        "**Crash mid-summary.** sessionlsp did not finish the interrupted compaction by itself "
        "or did not answer afterwards: that breaks its recovery guarantee and is a bug to fix."
    ),
}


def rows(c: Comparison) -> list[Row]:
    found: list[Row] = []
    if c.cold:
        found += _cold_rows(c.cold)
    if c.turns:
        found += _turn_rows(c.turns)
    if c.long:
        found += _long_rows(c.long)
    if c.overlap:
        found += _overlap_rows(c.overlap)
    if c.crash:
        found += _crash_rows(c.crash)
    if c.stream:
        found += _stream_rows(c.stream)
    if c.long:
        found += _memory_rows(c.long)
    if c.acp:
        found += _acp_rows(c.acp)
    return found


def summary_table(c: Comparison) -> str:
    lines = [
        f"| # | figure | sessionlsp | opencode {c.peer_version} | ratio (sessionlsp / opencode) |",
        "|---|---|---|---|---:|",
    ]
    for r in rows(c):
        lines.append(f"| {r.figure} | {r.what} | {r.ours} | {r.peer} | {r.ratio} |")
    return "\n".join(lines)


def slower(c: Comparison) -> str:
    keys = list(dict.fromkeys(r.slower for r in rows(c) if r.slower))
    if not keys:
        return "In this run sessionlsp was not slower than opencode on any figure."
    return "\n\n".join(fill(WHY[k]) for k in keys)


def sections(c: Comparison, plots: dict[str, str]) -> str:
    """One section per figure that ran: what was measured and how, then its table."""
    parts: list[str] = []

    def add(title: str, module: ModuleType, body: Callable[[], str], plot: str = "") -> None:
        seconds = c.seconds.get(module.__name__.rsplit(".", 1)[-1].removeprefix("fig_"), 0)
        text = f"### {title}\n\n{_method(module)}\n\n{body()}"
        if plot:
            text += f"\n\n![{title}]({plot})"
        if seconds:
            text += f"\n\nThis figure took {seconds:.0f} s."
        parts.append(text)

    if c.cold:
        cold = c.cold
        add("1. Cold start to first answer", fig_cold, lambda: _cold_section(cold))
    if c.turns:
        turns = c.turns
        plot = plots.get("speed", "")
        add("2. Per-turn overhead", fig_turns, lambda: _turn_section(turns), plot)
    if c.long:
        long = c.long
        add("3. Long sessions", fig_long, lambda: _long_section(long), plots.get("long", ""))
    if c.overlap:
        overlap = c.overlap
        add("4. Overlapping compaction triggers", fig_overlap, lambda: _overlap_section(overlap))
    if c.crash:
        crash = c.crash
        add("5. Crash mid-summary", fig_crash, lambda: _crash_section(crash))
    if c.stream:
        stream = c.stream
        add("6. Streaming and durable commits", fig_stream, lambda: _stream_section(stream))
    if c.long:
        memory = c.long
        parts.append(
            "### 7. Memory\n\n"
            + fill(
                "The peak resident set (`VmHWM` in `/proc/PID/status`) of each server process "
                "of figure 3, read right after its turns and before its history is listed, so "
                "it is what serving turns in a session of that size cost."
            )
            + "\n\n"
            + _memory_section(memory)
        )
    if c.acp:
        acp = c.acp
        add("8. The ACP front ends", fig_acp, lambda: _acp_section(acp))
    return "\n\n".join(parts)


def provider_note() -> str:
    return fill(
        "Both systems talk to the same fake provider (fakeprovider/openai_server.py in a "
        "process of its own, bench/fake_provider.py): loopback, OpenAI Chat Completions, "
        "streaming 4 characters per SSE event with no pauses unless a figure says otherwise, "
        "reporting the prompt tokens as the request's characters / 4. It counts every request "
        "it receives and classifies it: " + CLASSIFY_RULE + ". sessionlsp runs as `sessionlsp "
        "serve` / `sessionlsp chat` with the openai provider pointed at the fake "
        "(`SESSIONLSP_PROVIDER=openai`, `SESSIONLSP_BASE_URL`, `SESSIONLSP_MODEL`, "
        "`SESSIONLSP_CONTEXT_LIMIT`, `SESSIONLSP_OUTPUT_LIMIT`, `SESSIONLSP_API_KEY`); opencode "
        "with `OPENCODE_CONFIG_CONTENT` naming the fake as an `@ai-sdk/openai-compatible` "
        "provider with the same limits, `HOME` and the XDG directories in a temporary "
        "directory, auto-update, sharing, the models.dev download and LSP downloads off, and its "
        "plugin dependency marked as installed (a connected machine downloads both once; here "
        "each start would wait for them to fail; bench/opencode_peer.py has the details). Both run "
        "with a context window of 1 000 000 tokens and an output limit of 32 000 (no "
        "compaction) except in figures 4 and 5, which use 8 000 and 1 000 (usable window "
        "7 000 in both). opencode sends its agent's tool definitions with each chat request "
        "(11 tools); sessionlsp sessions created without a directory have none."
    )
