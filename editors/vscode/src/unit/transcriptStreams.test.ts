// The shared event streams (tests/fixtures/transcript_streams.json) run through this extension's
// transcript model. tests/editors/test_neovim.py runs the same file through the Neovim plugin's
// transcript.lua, so the two models cannot drift apart unnoticed.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, test } from "node:test";
import type { DeltaParams, LoadResult, SyncEvent, UnknownEvent } from "../protocol";
import { Transcript } from "../transcript";

// out/unit/ -> the repository root
const STREAMS = path.resolve(__dirname, "..", "..", "..", "..", "tests", "fixtures", "transcript_streams.json");

type Step = { sync: SyncEvent | UnknownEvent } | { delta: DeltaParams };

interface StreamCase {
  name: string;
  load: LoadResult;
  steps: Step[];
  expect: EndState;
}

/** The end state in the neutral form the JSON gives (both editors' tests build it). */
interface EndState {
  title: string;
  deleted: boolean;
  needsReload: boolean;
  messages: {
    id: string;
    kind: string;
    finish?: string;
    error?: string;
    parts: { id: string; type: string; text?: string; status?: string }[];
  }[];
  compactions: Record<string, string>;
}

function endState(t: Transcript, needsReload: boolean): EndState {
  const compactions: Record<string, string> = {};
  for (const c of t.compactions()) compactions[c.markerId] = c.status;
  return {
    title: t.session?.title ?? "",
    deleted: t.deleted,
    needsReload,
    messages: t.messages().map(({ info, parts }) => ({
      id: info.id,
      kind: info.kind,
      ...(info.finish === undefined ? {} : { finish: info.finish }),
      ...(info.error === undefined ? {} : { error: info.error.name }),
      parts: parts.map((p) => ({
        id: p.id,
        type: p.type,
        ...(p.type === "text" || p.type === "reasoning" ? { text: p.text } : {}),
        ...(p.type === "tool" ? { status: p.state.status } : {}),
      })),
    })),
    compactions,
  };
}

const cases = JSON.parse(fs.readFileSync(STREAMS, "utf8")) as StreamCase[];

describe("shared transcript streams", () => {
  test("the_file_has_cases", () => {
    assert.ok(cases.length >= 8, `${cases.length} cases in ${STREAMS}`);
  });

  for (const c of cases) {
    test(c.name, () => {
      const t = Transcript.fromLoad(c.load);
      let needsReload = false;
      for (const step of c.steps) {
        const outcome = "sync" in step ? t.applyEvent(step.sync) : t.applyDelta(step.delta);
        if (outcome === "gap") needsReload = true;
      }
      assert.deepEqual(endState(t, needsReload), c.expect);
    });
  }
});
