// Small formatting helpers shared by the status bar and the session picker. Pure.

import type { SessionInfo } from "./protocol";
import type { UiState } from "./viewMessages";

/** 999 -> "999", 1234 -> "1.2k", 7000 -> "7k", 128000 -> "128k", 1500000 -> "1.5M". */
export function compactNumber(n: number): string {
  const abs = Math.abs(n);
  const scaled = (value: number, unit: string): string => {
    const digits = value < 10 ? 1 : 0;
    return `${Number(value.toFixed(digits))}${unit}`;
  };
  if (abs >= 1_000_000) return scaled(n / 1_000_000, "M");
  if (abs >= 1_000) return scaled(n / 1_000, "k");
  return String(n);
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** Local "YYYY-MM-DD HH:MM". */
export function shortTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** A session's title, or "Untitled session" when it has none. */
export function sessionTitle(s: SessionInfo): string {
  const title = s.title.trim();
  return title === "" ? "Untitled session" : title;
}

/** What the session picker shows for a session. */
export function sessionLabel(s: SessionInfo): string {
  return `${sessionTitle(s)} · ${shortTime(s.time.updated)}`;
}

const STATE_ICONS: Record<UiState, string> = {
  idle: "$(comment-discussion)",
  busy: "$(loading~spin)",
  compacting: "$(fold~spin)",
  retrying: "$(sync~spin)",
};

/** The status bar text, e.g. "$(comment-discussion) idle · 1.2k/7k". */
export function statusText(
  state: UiState,
  meter: { tokens: number; usable: number } | undefined,
): string {
  const use =
    meter === undefined ? "" : ` · ${compactNumber(meter.tokens)}/${compactNumber(meter.usable)}`;
  return `${STATE_ICONS[state]} ${state}${use}`;
}
