import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { escapeHtml, renderInline, renderMarkdown } from "../markdown";

/** Every tag the renderer may write; anything else in the output would be injected markup. */
const ALLOWED = new Set([
  "p", "br", "pre", "code", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "blockquote",
  "ul", "ol", "li", "strong", "em", "del", "a", "span",
]);

const ATTRIBUTES = new Set(["href", "title", "class", "data-lang", "start"]);

function tags(html: string): string[] {
  return [...html.matchAll(/<\/?([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => (m[1] ?? "").toLowerCase());
}

describe("escaping", () => {
  test("html_in_the_text_is_escaped_not_rendered", () => {
    const html = renderMarkdown('<img src=x onerror="alert(1)"> <script>alert(2)</script> & "q"');
    assert.ok(!html.includes("<img"));
    assert.ok(!html.includes("<script"));
    assert.ok(html.includes("&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"));
    assert.ok(html.includes("&amp; &quot;q&quot;"));
  });

  test("html_inside_code_fences_and_spans_is_escaped", () => {
    const html = renderMarkdown("```html\n<b>bold</b>\n```\n\nand `<i>x</i>`");
    assert.ok(html.includes("&lt;b&gt;bold&lt;/b&gt;"));
    assert.ok(html.includes("<code>&lt;i&gt;x&lt;/i&gt;</code>"));
    for (const t of tags(html)) assert.ok(ALLOWED.has(t), `unexpected tag ${t}`);
  });

  test("javascript_and_data_links_are_not_links", () => {
    const html = renderMarkdown("[click](javascript:alert(1)) [d](data:text/html,x) [ok](https://example.com/a?b=1&c=2)");
    assert.ok(!/href="javascript/i.test(html));
    assert.ok(!/href="data/i.test(html));
    assert.ok(html.includes('<a href="https://example.com/a?b=1&amp;c=2"'));
  });

  test("images_are_not_loaded_their_alt_text_is_shown", () => {
    const html = renderMarkdown("![a cat](https://example.com/cat.png)");
    assert.ok(!html.includes("<img"));
    assert.ok(html.includes("[image: a cat]"));
  });

  test("quotes_cannot_break_out_of_an_href_attribute", () => {
    const html = renderMarkdown('<https://example.com/"onmouseover="x>');
    assert.ok(!html.includes('"onmouseover'));
  });

  test("escape_html_escapes_the_five_characters", () => {
    assert.equal(escapeHtml(`<>&"'`), "&lt;&gt;&amp;&quot;&#39;");
  });

  test("arbitrary_input_only_ever_yields_allowed_tags", () => {
    const pieces = ["<", ">", "*", "_", "`", "```", "[", "](", ")", "<https://a.b>", "\n", "# ", "- ", "> ", "~~", "&", "\"", "![", "javascript:", "1. ", "\\", "http://x.y "];
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      let src = "";
      for (let i = 0; i < 30; i++) src += pieces[rand(pieces.length)] ?? "";
      const html = renderMarkdown(src);
      for (const t of tags(html)) assert.ok(ALLOWED.has(t), `tag ${t} from ${JSON.stringify(src)}`);
      for (const m of html.matchAll(/<[a-z0-9]+((?:\s[^>]*)?)>/g)) {
        for (const a of (m[1] ?? "").matchAll(/\s([a-z-]+)=/g)) {
          assert.ok(ATTRIBUTES.has(a[1] ?? ""), `attribute ${a[1]} from ${JSON.stringify(src)}`);
        }
      }
    }
  });
});

describe("rendering", () => {
  test("code_fences_render_as_pre_code_with_the_language", () => {
    const html = renderMarkdown("Look:\n\n```python\ndef f():\n    return 1\n```\nafter");
    assert.ok(html.includes('<pre data-lang="python"><code class="language-python">def f():\n    return 1\n</code></pre>'));
    assert.ok(html.includes("<p>after</p>"));
  });

  test("an_unclosed_fence_runs_to_the_end_as_a_streaming_answer_does", () => {
    const html = renderMarkdown("```ts\nconst a = 1;\nconst b");
    assert.ok(html.startsWith('<pre data-lang="ts"><code class="language-ts">const a = 1;\nconst b\n</code></pre>'));
  });

  test("tilde_fences_and_longer_fences_hold_shorter_ones", () => {
    const html = renderMarkdown("````\n```\ninner\n```\n````");
    assert.ok(html.includes("<code>```\ninner\n```\n</code>"));
  });

  test("headings_lists_quotes_and_rules", () => {
    const html = renderMarkdown("## Objective\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n> quoted\n\n---");
    assert.ok(html.includes("<h2>Objective</h2>"));
    assert.ok(html.replace(/\n/g, "").includes("<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>"));
    assert.ok(html.includes("<ol><li>first</li><li>second</li></ol>"));
    assert.ok(html.includes("<blockquote><p>quoted</p></blockquote>"));
    assert.ok(html.includes("<hr>"));
  });

  test("paragraph_lines_are_joined_with_line_breaks", () => {
    assert.equal(renderMarkdown("a\nb\n\nc"), "<p>a<br>b</p>\n<p>c</p>");
  });

  test("inline_emphasis_code_strike_and_links", () => {
    assert.equal(renderInline("**b** *i* _j_ ~~s~~ `c`"), "<strong>b</strong> <em>i</em> <em>j</em> <del>s</del> <code>c</code>");
    assert.equal(
      renderInline("see https://example.com/x."),
      'see <a href="https://example.com/x" title="https://example.com/x">https://example.com/x</a>.',
    );
    assert.equal(renderInline("snake_case_name stays"), "snake_case_name stays");
    assert.equal(renderInline("2 * 3 * 4"), "2 * 3 * 4");
  });

  test("backslash_escapes_keep_the_character_literal", () => {
    assert.equal(renderInline("\\*not em\\*"), "*not em*");
  });
});
