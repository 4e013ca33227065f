// DOM helpers: elements are built with properties and text nodes, never from HTML strings,
// so values from the API cannot inject markup.

/** h('a', {href: '#/x', class: 'c', onclick: fn}, 'text', child, [children]) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const dash = '\u2014';

export function fmtInt(n) {
  return n === null || n === undefined ? dash : Number(n).toLocaleString('en-US');
}
export function fmtPct(r, digits = 1) {
  return r === null || r === undefined ? dash : `${(r * 100).toFixed(digits)}%`;
}
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return dash;
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
}
export function fmtMoney(v, currency = 'USD') {
  if (v === null || v === undefined) return dash;
  try {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency }).format(v);
  } catch {
    return `${v.toFixed(2)} ${currency}`;
  }
}
export function fmtTime(ts) {
  return ts ? new Date(ts).toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'short' }) : dash;
}

/** A small figure: label over value, with an optional note. */
export function card(label, value, note, cls) {
  return h('div', { class: `card ${cls || ''}` },
    h('div', { class: 'card-label' }, label),
    h('div', { class: 'card-value' }, value),
    note ? h('div', { class: 'card-note' }, note) : null);
}

/**
 * A table; columns: [{key, label, fmt?, num?, sort?}]; sortable columns sort on click
 * (buttons in the headers, aria-sort on the sorted one).
 */
export function table(caption, columns, rows, opts = {}) {
  let sortKey = opts.sortKey || null;
  let desc = opts.desc ?? true;
  const tbody = h('tbody');
  const heads = columns.map((c) => {
    const th = h('th', { scope: 'col', class: c.num ? 'num' : '' });
    if (opts.sortable) {
      th.append(h('button', {
        type: 'button',
        class: 'sort',
        onclick: () => {
          desc = sortKey === c.key ? !desc : true;
          sortKey = c.key;
          render();
        },
      }, c.label));
    } else {
      th.append(c.label);
    }
    return th;
  });
  const value = (r, c) => (c.get ? c.get(r) : r[c.key]);
  function render() {
    const sorted = [...rows];
    const col = columns.find((c) => c.key === sortKey);
    if (col) {
      sorted.sort((a, b) => {
        const x = value(a, col); const y = value(b, col);
        const cmp = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
        return desc ? -cmp : cmp;
      });
    }
    heads.forEach((th, i) => {
      if (columns[i].key === sortKey) th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    });
    tbody.replaceChildren(...sorted.map((r) => h('tr', null, columns.map((c) => {
      const v = value(r, c);
      const shown = c.fmt ? c.fmt(v, r) : v;
      return h(c.key === columns[0].key ? 'th' : 'td', {
        class: c.num ? 'num' : '', scope: c.key === columns[0].key ? 'row' : null,
      }, shown instanceof Node ? shown : (shown ?? dash));
    }))));
    if (!sorted.length) tbody.append(h('tr', null, h('td', { colspan: columns.length, class: 'empty' }, 'No data in this window.')));
  }
  render();
  return h('div', { class: 'table-wrap' },
    h('table', { class: opts.class || '' }, h('caption', null, caption), h('thead', null, h('tr', null, heads)), tbody));
}

export function section(title, ...children) {
  return h('section', { class: 'panel' }, h('h2', null, title), children);
}

export function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, `Could not load: ${err.message}`);
}
