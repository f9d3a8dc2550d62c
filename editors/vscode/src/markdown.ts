// A small, safe Markdown renderer for chat messages: the result is HTML in which every character
// of the input is escaped, and the only tags are the ones this module writes. No raw HTML, no
// images (their alt text is shown), links only for http, https and mailto. Pure: no DOM, no
// `vscode`, so it runs in the webview and under `node --test`.
//
// Supported: fenced code blocks (``` and ~~~, an unclosed fence runs to the end, which is what a
// streaming answer looks like), ATX headings, paragraphs (single newlines become <br>), block
// quotes, ordered and unordered lists (nested by indentation), thematic breaks, and inline code,
// **strong**, *emphasis*, ~~strike~~, [links](https://...), <https://autolinks> and bare URLs.

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/** Render Markdown to safe HTML. */
export function renderMarkdown(source: string): string {
  const text = source.replace(/\r\n?/g, "\n").replace(/\u0000/g, "\uFFFD");
  return renderBlocks(text.split("\n"));
}

const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const HR = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const LIST_ITEM = /^( {0,12})([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;

function isBlank(line: string): boolean {
  return line.trim() === "";
}

function startsBlock(line: string): boolean {
  return (
    FENCE_OPEN.test(line) ||
    HEADING.test(line) ||
    HR.test(line) ||
    QUOTE.test(line) ||
    LIST_ITEM.test(line)
  );
}

function renderBlocks(lines: string[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] ?? "";
    if (isBlank(line)) {
      i++;
      continue;
    }
    const fence = FENCE_OPEN.exec(line);
    if (fence !== null) {
      i = renderFence(lines, i, fence, out);
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading !== null) {
      const level = heading[1]?.length ?? 1;
      out.push(`<h${level}>${renderInline(heading[2] ?? "")}</h${level}>`);
      i++;
      continue;
    }
    if (HR.test(line)) {
      out.push("<hr>");
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner: string[] = [];
      while (i < lines.length) {
        const m = QUOTE.exec(lines[i] ?? "");
        if (m === null) break;
        inner.push(m[1] ?? "");
        i++;
      }
      out.push(`<blockquote>${renderBlocks(inner)}</blockquote>`);
      continue;
    }
    const item = LIST_ITEM.exec(line);
    if (item !== null) {
      i = renderList(lines, i, out);
      continue;
    }
    const para: string[] = [];
    while (i < lines.length) {
      const l = lines[i] ?? "";
      if (isBlank(l) || (para.length > 0 && startsBlock(l))) break;
      para.push(l.trim());
      i++;
    }
    out.push(`<p>${para.map((l) => renderInline(l)).join("<br>")}</p>`);
  }
  return out.join("\n");
}

function renderFence(lines: string[], start: number, open: RegExpExecArray, out: string[]): number {
  const marker = open[1] ?? "```";
  const lang = (open[2] ?? "").replace(/[^\w+#.-]/g, "");
  const indent = /^ */.exec(lines[start] ?? "")?.[0].length ?? 0;
  const body: string[] = [];
  let i = start + 1;
  let closed = false;
  while (i < lines.length) {
    const l = lines[i] ?? "";
    const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(l);
    if (close?.[1] !== undefined && close[1][0] === marker[0] && close[1].length >= marker.length) {
      i++;
      closed = true;
      break;
    }
    body.push(l.startsWith(" ".repeat(indent)) ? l.slice(indent) : l.trimStart());
    i++;
  }
  // A fence still streaming: the newline that ends the text is not an empty last line.
  if (!closed && body.length > 0 && body[body.length - 1] === "") body.pop();
  const cls = lang === "" ? "" : ` class="language-${escapeHtml(lang)}"`;
  const langLabel = lang === "" ? "" : ` data-lang="${escapeHtml(lang)}"`;
  const code = body.length === 0 ? "" : `${escapeHtml(body.join("\n"))}\n`;
  out.push(`<pre${langLabel}><code${cls}>${code}</code></pre>`);
  return i;
}

function renderList(lines: string[], start: number, out: string[]): number {
  const first = LIST_ITEM.exec(lines[start] ?? "");
  if (first === null) return start + 1;
  const baseIndent = first[1]?.length ?? 0;
  const ordered = /\d/.test(first[2] ?? "");
  const startNumber = ordered ? Number.parseInt(first[2] ?? "1", 10) : 1;
  const items: string[][] = [];
  let i = start;
  let current: string[] | undefined;
  let contentIndent = 0;
  while (i < lines.length) {
    const line = lines[i] ?? "";
    const m = LIST_ITEM.exec(line);
    const indent = m?.[1]?.length ?? 0;
    if (m !== null && indent <= baseIndent + 1 && /\d/.test(m[2] ?? "") === ordered) {
      current = [m[3] ?? ""];
      items.push(current);
      contentIndent = indent + (m[2]?.length ?? 1) + 1;
      i++;
      continue;
    }
    if (current === undefined) break;
    if (isBlank(line)) {
      // A blank line continues the item only when an indented line follows.
      const next = lines[i + 1] ?? "";
      if (!isBlank(next) && leadingSpaces(next) >= contentIndent) {
        current.push("");
        i++;
        continue;
      }
      break;
    }
    if (leadingSpaces(line) >= Math.min(contentIndent, baseIndent + 2)) {
      current.push(line.slice(Math.min(leadingSpaces(line), contentIndent)));
      i++;
      continue;
    }
    if (m !== null || startsBlock(line)) break;
    current.push(line.trim()); // a lazy continuation line of the item's paragraph
    i++;
  }
  const tag = ordered ? "ol" : "ul";
  const startAttr = ordered && startNumber !== 1 ? ` start="${startNumber}"` : "";
  const body = items
    .map((item) => {
      let html = renderBlocks(item);
      const single = /^<p>([\s\S]*?)<\/p>/.exec(html);
      if (single !== null && !html.slice(single[0].length).includes("<p>")) {
        html = (single[1] ?? "") + html.slice(single[0].length);
      }
      return `<li>${html}</li>`;
    })
    .join("");
  out.push(`<${tag}${startAttr}>${body}</${tag}>`);
  return i;
}

function leadingSpaces(line: string): number {
  return /^ */.exec(line)?.[0].length ?? 0;
}

// -- inline -------------------------------------------------------------------------------------

const SAFE_URL = /^(https?:\/\/|mailto:)[^\s<>"]+$/i;

function link(href: string, labelHtml: string): string {
  return `<a href="${escapeHtml(href)}" title="${escapeHtml(href)}">${labelHtml}</a>`;
}

/** Render one line (or a heading) of inline Markdown to safe HTML. */
export function renderInline(text: string, allowLinks = true): string {
  // Protected pieces (code spans, links) become placeholders, the rest is escaped, emphasis is
  // applied to the escaped text, then the placeholders are put back.
  const held: string[] = [];
  const hold = (html: string): string => `\u0000${held.push(html) - 1}\u0000`;
  let plain = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && /[\\`*_{}[\]()#+\-.!~<>|]/.test(text[i + 1] ?? "")) {
      plain += hold(escapeHtml(text[i + 1] ?? ""));
      i += 2;
      continue;
    }
    if (c === "`") {
      const run = /^`+/.exec(text.slice(i))?.[0] ?? "`";
      const close = text.indexOf(run, i + run.length);
      if (close !== -1) {
        let code = text.slice(i + run.length, close);
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        plain += hold(`<code>${escapeHtml(code)}</code>`);
        i = close + run.length;
        continue;
      }
      plain += run;
      i += run.length;
      continue;
    }
    if (c === "!" && text[i + 1] === "[") {
      const m = /^!\[([^\]]*)\]\(([^()\s]*)(?:\s+"[^"]*")?\)/.exec(text.slice(i));
      if (m !== null) {
        plain += hold(`<span class="image-alt">[image: ${escapeHtml(m[1] ?? "")}]</span>`);
        i += m[0].length;
        continue;
      }
    }
    if (c === "[" && allowLinks) {
      const m = /^\[((?:[^\]\\]|\\.)*)\]\(([^()\s]*)(?:\s+"[^"]*")?\)/.exec(text.slice(i));
      if (m !== null) {
        const label = renderInline(m[1] ?? "", false);
        const href = m[2] ?? "";
        plain += hold(
          SAFE_URL.test(href) ? link(href, label) : `${label} (${escapeHtml(href)})`,
        );
        i += m[0].length;
        continue;
      }
    }
    if (c === "<" && allowLinks) {
      const m = /^<((?:https?:\/\/|mailto:)[^\s<>"]+)>/i.exec(text.slice(i));
      if (m !== null) {
        plain += hold(link(m[1] ?? "", escapeHtml(m[1] ?? "")));
        i += m[0].length;
        continue;
      }
    }
    if ((c === "h" || c === "H") && allowLinks && /^https?:\/\//i.test(text.slice(i, i + 8))) {
      const prev = text[i - 1];
      if (prev === undefined || /[\s(]/.test(prev)) {
        const m = /^https?:\/\/[^\s<>"]+/i.exec(text.slice(i));
        if (m !== null) {
          const url = m[0].replace(/[.,;:!?)]+$/, "");
          plain += hold(link(url, escapeHtml(url)));
          i += url.length;
          continue;
        }
      }
    }
    plain += c;
    i++;
  }
  let html = escapeHtml(plain);
  html = html
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, "$1<strong>$2</strong>")
    .replace(/(^|[^*\w])\*(?=[^\s*])([^*]*?[^\s*])\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, "$1<em>$2</em>")
    .replace(/~~(?=\S)([\s\S]*?\S)~~/g, "<del>$1</del>");
  return html.replace(/\u0000(\d+)\u0000/g, (_, n: string) => held[Number(n)] ?? "");
}
