// @ts-check
// Reading the chat webview through its DOM contract, and nothing else:
// #transcript .msg[data-role][data-message-id] > .msg-body (class "streaming" on the .msg or its
// .msg-body while the answer streams),
// details.compaction[data-marker-id][data-status] with .summary-text and .compaction-error,
// #meter[data-tokens][data-usable], #state, document.body.dataset.sessionId.

/**
 * @typedef {object} DomMessage
 * @property {string} id
 * @property {string} role
 * @property {string} text  the .msg-body's textContent
 * @property {boolean} streaming
 */

/**
 * @typedef {object} DomCompaction
 * @property {string} markerId
 * @property {string} status
 * @property {string} summary  .summary-text's textContent
 * @property {string} error  .compaction-error's textContent
 */

/**
 * @typedef {object} DomSnapshot
 * @property {string} sessionId
 * @property {string} state  #state's textContent
 * @property {DomMessage[]} messages  in transcript order
 * @property {DomCompaction[]} compactions
 * @property {{tokens: string | null, usable: string | null}} meter  the raw attributes
 */

/**
 * @param {import("playwright-core").Frame} frame
 * @returns {Promise<DomSnapshot>}
 */
export function snapshot(frame) {
  return frame.evaluate(() => {
    const text = (/** @type {Element | null} */ el) => (el?.textContent ?? "").trim();
    const meter = document.querySelector("#meter");
    return {
      sessionId: document.body.dataset.sessionId ?? "",
      state: text(document.querySelector("#state")),
      messages: [...document.querySelectorAll("#transcript .msg[data-role]")].map((el) => {
        const body = el.querySelector(".msg-body");
        return {
          id: el.getAttribute("data-message-id") ?? "",
          role: el.getAttribute("data-role") ?? "",
          text: text(body),
          streaming:
            el.classList.contains("streaming") || (body?.classList.contains("streaming") ?? false),
        };
      }),
      compactions: [...document.querySelectorAll("#transcript details.compaction")].map((el) => ({
        markerId: el.getAttribute("data-marker-id") ?? "",
        status: el.getAttribute("data-status") ?? "",
        summary: text(el.querySelector(".summary-text")),
        error: text(el.querySelector(".compaction-error")),
      })),
      meter: {
        tokens: meter?.getAttribute("data-tokens") ?? null,
        usable: meter?.getAttribute("data-usable") ?? null,
      },
    };
  });
}

/**
 * Record, from now on, every distinct text each assistant .msg-body shows (a MutationObserver
 * on the whole body, so re-rendered containers are seen too). Read with paintsOf().
 * @param {import("playwright-core").Frame} frame
 */
export function recordAssistantPaints(frame) {
  return frame.evaluate(() => {
    /** @type {Record<string, {text: string, streaming: boolean}[]>} */
    const paints = {};
    const record = () => {
      for (const el of document.querySelectorAll("#transcript .msg[data-role=assistant]")) {
        const id = el.getAttribute("data-message-id") ?? "";
        const body = el.querySelector(".msg-body");
        const text = (body?.textContent ?? "").trim();
        const list = (paints[id] ??= []);
        if (list.at(-1)?.text !== text) {
          const streaming =
            el.classList.contains("streaming") || (body?.classList.contains("streaming") ?? false);
          list.push({ text, streaming });
        }
      }
    };
    record();
    new MutationObserver(record).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
      attributes: true,
    });
    /** @type {any} */ (window).__sessionlspPaints = paints;
  });
}

/**
 * The distinct texts recorded for assistant message `id`, in order.
 * @param {import("playwright-core").Frame} frame
 * @param {string} id
 * @returns {Promise<{text: string, streaming: boolean}[]>}
 */
export function paintsOf(frame, id) {
  return frame.evaluate((id) => /** @type {any} */ (window).__sessionlspPaints?.[id] ?? [], id);
}

/**
 * The words of rendered Markdown, to compare a summary's rendering with its stored source:
 * whitespace and Markdown punctuation removed (block elements join without spaces in
 * textContent, and `## Objective` renders as "Objective").
 * @param {string} text
 */
export function markdownWords(text) {
  return text.replace(/[\s#*_`>|-]/g, "");
}
