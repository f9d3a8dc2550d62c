// @ts-check
// Named checks run in order, each printed with its time; the first failure stops the phase
// with the check's name in the error.

export class Steps {
  /** @param {string} phase */
  constructor(phase) {
    this.phase = phase;
    /** @type {{name: string, ms: number}[]} */
    this.passed = [];
  }

  /**
   * @template T
   * @param {string} name  the behaviour checked, as a sentence
   * @param {() => Promise<T>} check
   * @returns {Promise<T>}
   */
  async step(name, check) {
    const start = Date.now();
    try {
      const value = await check();
      const ms = Date.now() - start;
      this.passed.push({ name, ms });
      console.log(`  ok   [${this.phase}] ${name} (${ms} ms)`);
      return value;
    } catch (error) {
      console.log(`  FAIL [${this.phase}] ${name} (${Date.now() - start} ms)`);
      const message = error instanceof Error ? error.message : String(error);
      const failure = new Error(`[${this.phase}] ${name}: ${message}`);
      if (error instanceof Error && error.stack)
        failure.stack = `${failure.message}\n${error.stack}`;
      throw failure;
    }
  }
}

/**
 * @param {unknown} condition
 * @param {string} message
 * @returns {asserts condition}
 */
export function check(condition, message) {
  if (!condition) throw new Error(message);
}
