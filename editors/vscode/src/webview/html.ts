// The chat webview's HTML. Pure, so the node tests can load the same page in a browser.
// Content-Security-Policy: nothing by default; the script only with this page's nonce; styles,
// images and fonts only from the webview's own resource origin (no inline styles, no remote
// content); no inline event handlers anywhere (the script adds listeners).

export interface WebviewHtmlOptions {
  cspSource: string;
  nonce: string;
  scriptUri: string;
  styleUri: string;
}

const ATTR_ESCAPES: Record<string, string> = { "&": "&amp;", '"': "&quot;", "<": "&lt;", ">": "&gt;" };

function attr(value: string): string {
  return value.replace(/[&"<>]/g, (c) => ATTR_ESCAPES[c] ?? c);
}

export function contentSecurityPolicy(cspSource: string, nonce: string): string {
  return [
    "default-src 'none'",
    `style-src ${cspSource}`,
    `img-src ${cspSource}`,
    `font-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join("; ");
}

export function webviewHtml(o: WebviewHtmlOptions): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${attr(contentSecurityPolicy(o.cspSource, o.nonce))}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${attr(o.styleUri)}">
<title>sessionlsp</title>
</head>
<body>
<header class="toolbar">
  <select id="sessions" aria-label="Session"></select>
  <button id="new-session" type="button" title="Start a new session">New session</button>
</header>
<div class="statusline">
  <span id="state" data-state="idle" aria-live="polite">idle</span>
  <div id="meter" data-tokens="" data-usable="" title="Context use">
    <progress class="meter-bar" max="1" value="0"></progress>
    <span class="meter-text">– / – tokens</span>
  </div>
</div>
<div id="problem" role="alert" hidden></div>
<main id="transcript" class="empty"></main>
<footer class="composer">
  <textarea id="prompt" rows="3" placeholder="Ask something (Enter sends, Shift+Enter for a new line)" aria-label="Prompt"></textarea>
  <div class="actions">
    <button id="compact" type="button" class="secondary" title="Compact the session now">Compact</button>
    <button id="cancel" type="button" class="secondary" title="Stop the running answer or compaction" disabled>Cancel</button>
    <button id="send" type="button" title="Send (Enter)">Send</button>
  </div>
</footer>
<script nonce="${attr(o.nonce)}" src="${attr(o.scriptUri)}"></script>
</body>
</html>
`;
}
