// A tiny test runner for the extension host: named async tests, run in order, each with a
// deadline; every result goes to the console (which the workbench forwards to the harness
// through codeAutomationLog) and, one JSON line each, to $SESSIONLSP_TEST_REPORT when set.
import { appendFileSync } from "node:fs";

export interface TestResult {
  name: string;
  ok: boolean;
  ms: number;
  error?: string;
}

interface TestCase {
  name: string;
  fn: () => Promise<void>;
  timeoutMs: number;
}

export class Suite {
  private readonly cases: TestCase[] = [];

  constructor(private readonly reportFile = process.env.SESSIONLSP_TEST_REPORT) {}

  test(name: string, fn: () => Promise<void>, timeoutMs = 30_000): void {
    this.cases.push({ name, fn, timeoutMs });
  }

  /** Run every test; rejects (so the workbench exits non-zero) when any failed. */
  async run(): Promise<TestResult[]> {
    const results: TestResult[] = [];
    for (const c of this.cases) {
      const start = Date.now();
      let error: string | undefined;
      try {
        await withDeadline(c.fn(), c.timeoutMs, c.name);
      } catch (err) {
        error = err instanceof Error ? (err.stack ?? err.message) : String(err);
      }
      const result: TestResult = { name: c.name, ok: error === undefined, ms: Date.now() - start };
      if (error !== undefined) result.error = error;
      results.push(result);
      this.report(result);
    }
    const failed = results.filter((r) => !r.ok);
    console.log(`[suite] ${results.length - failed.length} passed, ${failed.length} failed`);
    if (failed.length > 0) {
      throw new Error(
        `${failed.length} extension-host test(s) failed: ${failed.map((r) => r.name).join(", ")}`,
      );
    }
    return results;
  }

  private report(result: TestResult): void {
    const line = `[suite] ${result.ok ? "ok  " : "FAIL"} ${result.name} (${result.ms} ms)`;
    if (result.ok) console.log(line);
    else console.error(`${line}\n${result.error ?? ""}`);
    if (this.reportFile) appendFileSync(this.reportFile, JSON.stringify(result) + "\n");
  }
}

function withDeadline(work: Promise<void>, ms: number, name: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: no result after ${ms} ms`)), ms);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

/** Resolve with the first truthy value of `check`, polled; reject after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() >= deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(message);
}
