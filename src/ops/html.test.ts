import { describe, expect, it } from 'vitest';
import { escapeHtml, html, raw } from './html.js';

describe('html template', () => {
  it('escapes the five characters that can break out of text or an attribute', () => {
    expect(escapeHtml(`<a href="x" onclick='y'>&</a>`)).toBe('&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;');
  });

  it('escapes interpolated strings and numbers but not the literal parts', () => {
    const host = 'evil"><script>alert(1)</script>';
    expect(html`<p title="${host}">${host} ${42}</p>`.value).toBe(
      '<p title="evil&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">evil&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt; 42</p>',
    );
  });

  it('nests SafeHtml without escaping it twice, and escapes each array element', () => {
    const items = ['a&b', '<i>'].map((s) => html`<li>${s}</li>`);
    expect(html`<ul>${items}</ul>`.value).toBe('<ul><li>a&amp;b</li><li>&lt;i&gt;</li></ul>');
    expect(html`${['<', raw('<br>')]}`.value).toBe('&lt;<br>');
  });

  it('renders nothing for null, undefined and false, but renders 0 and true', () => {
    expect(html`[${null}${undefined}${false}${0}${true}]`.value).toBe('[0true]');
  });
});
