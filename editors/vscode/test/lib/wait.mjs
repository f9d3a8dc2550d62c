// @ts-check
// Waiting on a condition with a deadline. Polling is how the harness synchronises with things
// it cannot subscribe to (files, other processes); the interval only sets how soon a
// condition that became true is noticed, never whether a test passes.

/**
 * Resolve with the first truthy value `check` returns; reject after `timeout` ms, naming
 * `what` and the last error `check` threw.
 * @template T
 * @param {string} what
 * @param {() => T | Promise<T>} check
 * @param {{timeout?: number, interval?: number}} [options]
 * @returns {Promise<Exclude<T, false | null | undefined | 0 | "">>}
 */
export async function waitFor(what, check, { timeout = 30_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  /** @type {unknown} */
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value) return /** @type {Exclude<T, false | null | undefined | 0 | "">} */ (value);
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : "";
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Settle with `promise`, or reject after `timeout` ms naming `what`.
 * @template T
 * @param {string} what
 * @param {Promise<T>} promise
 * @param {number} timeout
 * @returns {Promise<T>}
 */
export function withTimeout(what, promise, timeout) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)),
      timeout,
    );
  });
  return /** @type {Promise<T>} */ (Promise.race([promise, expired])).finally(() =>
    clearTimeout(timer),
  );
}
