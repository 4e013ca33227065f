// The pages: each renders into `el` from the JSON API only (overview, health, ML, business,
// alerts, notifications).

import { api, ApiError } from './api.js';
import { lineChart } from './charts.js';
import {
  card, errorBox, fmtInt, fmtMoney, fmtMs, fmtPct, fmtTime, h, section, table,
} from './dom.js';

export const TITLES = {
  overview: 'Overview',
  health: 'Health',
  ml: 'ML pipelines',
  business: 'Business',
  alerts: 'Alerts',
  notifications: 'Notifications',
};

const RANGES = ['1h', '24h', '7d', '30d'];

/** The range buttons of a page: each links to the same page with another `range`. */
function rangePicker(page, current) {
  return h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' },
    RANGES.map((r) => h('a', {
      href: `#/${page}?range=${r}`,
      class: 'range',
      'aria-current': r === current ? 'true' : null,
    }, r)));
}

function rangeOf(ctx) {
  const r = ctx.params.get('range');
  return RANGES.includes(r) ? r : '24h';
}

function header(title, ...extra) {
  return h('div', { class: 'page-head' }, h('h1', null, title), extra);
}

function windowNote(range) {
  return range ? h('p', { class: 'window' }, `Window: ${fmtTime(range.from)} to ${fmtTime(range.to)}`) : null;
}

const failed = (s) => s && s.error && !('requests' in s) && !('revenue' in s) && !('jobs' in s) && !('count' in s);

// ---- overview ---------------------------------------------------------------------------

async function overview(el) {
  const s = await api('dashboard/summary');
  const { system_health: hs, ml_pipelines: ml, business: biz, active_alerts: al } = s.sections;
  el.append(header('Overview'), windowNote(s.range));
  const cards = h('div', { class: 'cards' });
  if (hs) {
    if (failed(hs)) cards.append(card('Health', 'unavailable', hs.error.message, 'bad'));
    else {
      cards.append(
        card('Status', hs.status, `up ${Math.round(hs.uptime_seconds / 60)} min`, `status-${hs.status}`),
        card('Requests', fmtInt(hs.requests)),
        card('Error rate', fmtPct(hs.error_rate, 2), `${fmtInt(hs.errors)} errors`),
        card('Latency p95', fmtMs(hs.latency_ms.p95), `p50 ${fmtMs(hs.latency_ms.p50)}`),
      );
    }
  }
  if (biz) {
    if (failed(biz)) cards.append(card('Business', 'unavailable', biz.error.message, 'bad'));
    else {
      cards.append(
        card('Revenue', fmtMoney(biz.revenue, biz.currency), `${fmtInt(biz.orders)} orders`),
        card('Average order', fmtMoney(biz.aov, biz.currency), `${fmtInt(biz.units)} units`),
      );
    }
  }
  if (ml) {
    if (failed(ml)) cards.append(card('ML', 'unavailable', ml.error.message, 'bad'));
    else {
      cards.append(
        card('ML success', fmtPct(ml.success_rate), `${fmtInt(ml.jobs)} jobs`),
        card('ML cost', fmtMoney(ml.cost_usd), ml.cost_source),
      );
    }
  }
  if (al && !failed(al)) {
    const sev = al.by_severity;
    cards.append(card('Active alerts', fmtInt(al.count),
      `${sev.critical} critical, ${sev.warning} warning, ${sev.info} info`, al.count ? 'warn' : ''));
  }
  el.append(cards);
  if (al && !failed(al)) {
    el.append(section('Active alerts',
      table('Newest active alerts', [
        { key: 'name', label: 'Alert' },
        { key: 'severity', label: 'Severity', fmt: sevBadge },
        { key: 'value', label: 'Value', num: true, fmt: num },
        { key: 'threshold', label: 'Threshold', num: true, fmt: num },
        { key: 'triggered_at', label: 'Since', fmt: fmtTime },
      ], al.items),
      h('p', null, h('a', { href: '#/alerts' }, 'Manage alerts'))));
  }
  if (s.omitted.length) {
    el.append(h('p', { class: 'note' }, `Not shown for your role: ${s.omitted.join(', ')}.`));
  }
}

function num(v) {
  return v === null || v === undefined ? '\u2014' : (+v.toFixed(4)).toLocaleString('en-US');
}

function sevBadge(s) {
  return h('span', { class: `sev sev-${s}` }, s);
}

// ---- health -----------------------------------------------------------------------------

async function health(el, ctx) {
  const range = rangeOf(ctx);
  const [ov, ts, routes, db] = await Promise.all([
    api('health/overview', { query: { range } }),
    api('health/timeseries', { query: { range } }),
    api('health/api', { query: { range, limit: 100 } }),
    api('health/database', { query: { range } }),
  ]);
  el.append(header('Health', rangePicker('health', range)), windowNote(ov.range));
  el.append(h('div', { class: 'cards' },
    card('Status', ov.status, null, `status-${ov.status}`),
    card('Requests', fmtInt(ov.requests)),
    card('Error rate', fmtPct(ov.error_rate, 2), `${fmtInt(ov.errors)} errors`),
    card('Latency p95', fmtMs(ov.latency_ms.p95), `p99 ${fmtMs(ov.latency_ms.p99)}`),
    card('Store', db.backend, `ping ${fmtMs(db.ping_ms)}`, db.available ? '' : 'bad'),
    card('Live', ov.realtime.available ? `${(ov.realtime.requests_per_second ?? 0).toFixed(2)} req/s` : 'unavailable',
      ov.realtime.available ? `error rate ${fmtPct(ov.realtime.error_rate, 2)}` : ov.realtime.reason),
  ));
  const at = ts.points.map((p) => p.ts);
  el.append(h('div', { class: 'charts' },
    lineChart({
      title: `Requests and errors per ${ts.granularity}`,
      ts: at,
      series: [
        { label: 'Requests', values: ts.points.map((p) => p.requests) },
        { label: 'Errors', values: ts.points.map((p) => p.errors), color: '#c0392b', scale: 'y2' },
      ],
      axes: { y: 'requests', y2: 'errors' },
    }),
    lineChart({
      title: 'Latency (ms)',
      ts: at,
      series: [
        { label: 'p50', values: ts.points.map((p) => p.latency_ms.p50), color: '#1e8449' },
        { label: 'p95', values: ts.points.map((p) => p.latency_ms.p95), color: '#b9770e' },
        { label: 'p99', values: ts.points.map((p) => p.latency_ms.p99), color: '#c0392b' },
      ],
      axes: { y: 'ms' },
    })));
  el.append(section('Endpoints', table('Latency and errors by endpoint (select a heading to sort)', [
    { key: 'route', label: 'Endpoint', get: (r) => `${r.method} ${r.route}` },
    { key: 'requests', label: 'Requests', num: true, fmt: fmtInt },
    { key: 'errors', label: 'Errors', num: true, fmt: fmtInt },
    { key: 'error_rate', label: 'Error rate', num: true, fmt: (v) => fmtPct(v, 2) },
    { key: 'p50', label: 'p50', num: true, get: (r) => r.latency_ms.p50, fmt: fmtMs },
    { key: 'p95', label: 'p95', num: true, get: (r) => r.latency_ms.p95, fmt: fmtMs },
    { key: 'p99', label: 'p99', num: true, get: (r) => r.latency_ms.p99, fmt: fmtMs },
    { key: 'max', label: 'Max', num: true, get: (r) => r.latency_ms.max, fmt: fmtMs },
  ], routes.routes, { sortable: true, sortKey: 'requests', class: 'endpoints' })));
}

// ---- ML ---------------------------------------------------------------------------------

const mlColumns = (first, label) => [
  { key: first, label },
  { key: 'jobs', label: 'Jobs', num: true, fmt: fmtInt },
  { key: 'failed', label: 'Failed', num: true, fmt: fmtInt },
  { key: 'success_rate', label: 'Success', num: true, fmt: (v) => fmtPct(v) },
  { key: 'p50', label: 'Duration p50', num: true, get: (r) => r.duration_ms.p50, fmt: fmtMs },
  { key: 'p95', label: 'Duration p95', num: true, get: (r) => r.duration_ms.p95, fmt: fmtMs },
  { key: 'cost_usd', label: 'Cost', num: true, fmt: (v) => fmtMoney(v) },
];

async function ml(el, ctx) {
  const range = rangeOf(ctx);
  const [ov, providers, assets] = await Promise.all([
    api('ml/overview', { query: { range } }),
    api('ml/providers', { query: { range } }),
    api('ml/assets', { query: { range } }),
  ]);
  el.append(header('ML pipelines', rangePicker('ml', range)), windowNote(ov.range));
  el.append(h('div', { class: 'cards' },
    card('Jobs', fmtInt(ov.jobs), `${fmtInt(ov.failed)} failed, ${fmtInt(ov.cancelled)} cancelled`),
    card('Success rate', fmtPct(ov.success_rate)),
    card('Duration p95', fmtMs(ov.duration_ms.p95), `p50 ${fmtMs(ov.duration_ms.p50)}`),
    card('Cost', fmtMoney(ov.cost_usd), `from ${ov.cost_source}`)));
  el.append(section('Pipelines', table('Jobs by pipeline', mlColumns('pipeline', 'Pipeline'), ov.pipelines, { sortable: true })));
  el.append(section('Providers', table('Jobs by provider', [
    ...mlColumns('provider', 'Provider'),
    { key: 'cost_per_success_usd', label: 'Cost per success', num: true, fmt: (v) => fmtMoney(v) },
  ], providers.providers, { sortable: true, sortKey: 'jobs' })));
  el.append(section('Asset stages', table('Asset jobs by stage', mlColumns('stage', 'Stage'), assets.stages)));
}

// ---- business ---------------------------------------------------------------------------

function delta(d) {
  if (!d) return null;
  const pct = d.pct === null ? 'new' : `${d.pct >= 0 ? '+' : ''}${(d.pct * 100).toFixed(1)}%`;
  return `${pct} vs previous period`;
}

async function business(el, ctx) {
  const range = rangeOf(ctx);
  const compare = 'previous_period';
  const [ov, sales, cols, prods, funnel] = await Promise.all([
    api('business/overview', { query: { range, compare } }),
    api('business/sales', { query: { range, compare } }),
    api('business/collections', { query: { range } }),
    api('business/products', { query: { range, limit: 20 } }),
    api('business/funnel', { query: { range } }),
  ]);
  const cur = ov.currency;
  const dl = ov.compare?.delta || {};
  el.append(header('Business', rangePicker('business', range)), windowNote(ov.range));
  el.append(h('div', { class: 'cards' },
    card('Revenue', fmtMoney(ov.revenue, cur), delta(dl.revenue)),
    card('Orders', fmtInt(ov.orders), delta(dl.orders)),
    card('Average order', fmtMoney(ov.aov, cur), delta(dl.aov)),
    card('Units', fmtInt(ov.units), delta(dl.units))));
  const prev = sales.compare?.points || [];
  el.append(h('div', { class: 'charts' }, lineChart({
    title: `Revenue per ${sales.granularity} (${cur}), previous period dashed`,
    ts: sales.points.map((p) => p.ts),
    series: [
      { label: 'Revenue', values: sales.points.map((p) => p.revenue) },
      { label: 'Previous period', values: sales.points.map((_, i) => prev[i]?.revenue ?? null), color: '#5d6d7e', dash: [6, 4] },
    ],
    axes: { y: cur },
  }), lineChart({
    title: `Orders per ${sales.granularity}`,
    ts: sales.points.map((p) => p.ts),
    series: [
      { label: 'Orders', values: sales.points.map((p) => p.orders), color: '#1e8449' },
      { label: 'Previous period', values: sales.points.map((_, i) => prev[i]?.orders ?? null), color: '#5d6d7e', dash: [6, 4] },
    ],
    axes: { y: 'orders' },
  })));
  el.append(section('Funnel (sessions)', funnelBars(funnel.steps)));
  el.append(section('Collections', table('Sales by collection', [
    { key: 'name', label: 'Collection' },
    { key: 'revenue', label: 'Revenue', num: true, fmt: (v) => fmtMoney(v, cur) },
    { key: 'orders', label: 'Orders', num: true, fmt: fmtInt },
    { key: 'units', label: 'Units', num: true, fmt: fmtInt },
    { key: 'aov', label: 'AOV', num: true, fmt: (v) => fmtMoney(v, cur) },
    { key: 'views', label: 'Views', num: true, fmt: fmtInt },
    { key: 'conversion_rate', label: 'Conversion', num: true, fmt: (v) => fmtPct(v, 2) },
  ], cols.collections, { sortable: true, sortKey: 'revenue' })));
  el.append(section('Products', table('Top products by revenue', [
    { key: 'product_id', label: 'Product' },
    { key: 'collection', label: 'Collection' },
    { key: 'revenue', label: 'Revenue', num: true, fmt: (v) => fmtMoney(v, cur) },
    { key: 'units', label: 'Units', num: true, fmt: fmtInt },
    { key: 'views', label: 'Views', num: true, fmt: fmtInt },
    { key: 'cart_adds', label: 'Cart adds', num: true, fmt: fmtInt },
    { key: 'conversion_rate', label: 'Conversion', num: true, fmt: (v) => fmtPct(v, 2) },
    { key: 'inventory', label: 'In stock', num: true, fmt: fmtInt },
  ], prods.products, { sortable: true, sortKey: 'revenue' })));
}

const STEP_NAMES = {
  page_view: 'Page view', product_view: 'Product view', cart_add: 'Added to cart', checkout_start: 'Checkout', order: 'Order',
};

function funnelBars(steps) {
  const first = steps[0]?.sessions || 0;
  return h('ol', { class: 'funnel' }, steps.map((s) => h('li', null,
    h('span', { class: 'funnel-step' }, STEP_NAMES[s.step] || s.step),
    h('progress', { max: Math.max(first, 1), value: s.sessions, 'aria-label': `${STEP_NAMES[s.step] || s.step}: ${s.sessions} sessions` }),
    h('span', { class: 'funnel-figures' },
      `${fmtInt(s.sessions)} sessions · ${fmtPct(s.conversion_from_start)} of start`,
      s.drop_off ? ` · drop-off ${fmtInt(s.drop_off)} (${fmtPct(s.conversion_from_previous === null ? null : 1 - s.conversion_from_previous)})` : ''))));
}

// ---- alerts -----------------------------------------------------------------------------

async function alerts(el, ctx) {
  const [active, history, configs, catalog] = await Promise.all([
    api('alerts/active', { query: { limit: 100 } }),
    api('alerts/history', { query: { range: '30d', limit: 50 } }),
    api('alerts/configs'),
    api('alerts/metrics'),
  ]);
  el.append(header('Alerts'));
  const act = async (alert, action) => {
    try {
      await api(`alerts/${alert.id}/${action}`, { method: 'POST', body: {} });
      ctx.rerender();
    } catch (err) {
      el.prepend(errorBox(err));
    }
  };
  el.append(section(`Active (${active.items.length})`, table('Unacknowledged alerts', [
    { key: 'name', label: 'Alert' },
    { key: 'severity', label: 'Severity', fmt: sevBadge },
    { key: 'value', label: 'Value', num: true, fmt: num },
    { key: 'threshold', label: 'Threshold', num: true, fmt: num },
    { key: 'triggered_at', label: 'Since', fmt: fmtTime },
    {
      key: 'id', label: 'Actions', fmt: (_, a) => h('span', { class: 'actions' },
        h('button', { type: 'button', class: 'ack', 'data-alert': a.id, onclick: () => act(a, 'acknowledge') }, 'Acknowledge', h('span', { class: 'sr' }, ` ${a.name}`)),
        h('button', { type: 'button', class: 'resolve', 'data-alert': a.id, onclick: () => act(a, 'resolve') }, 'Resolve', h('span', { class: 'sr' }, ` ${a.name}`))),
    },
  ], active.items, { class: 'active-alerts' })));
  el.append(section('History (30 days)', table('Alert history, newest first', [
    { key: 'name', label: 'Alert' },
    { key: 'severity', label: 'Severity', fmt: sevBadge },
    { key: 'status', label: 'Status' },
    { key: 'triggered_at', label: 'Triggered', fmt: fmtTime },
    { key: 'acknowledged_by', label: 'Acknowledged by' },
    { key: 'resolved_at', label: 'Resolved', fmt: fmtTime },
    { key: 'resolved_by', label: 'Resolved by' },
  ], history.items, { class: 'history' })));
  const form = configForm(catalog.items, ctx);
  el.append(section('Configurations', table('Alert configurations', [
    { key: 'name', label: 'Name' },
    { key: 'metric', label: 'Metric', get: (c) => `${c.stat}(${c.metric})` },
    { key: 'condition', label: 'Condition', get: (c) => `${c.condition} ${c.threshold}` },
    { key: 'window_secs', label: 'Window', num: true, fmt: (v) => `${v} s` },
    { key: 'severity', label: 'Severity', fmt: sevBadge },
    { key: 'enabled', label: 'Enabled', fmt: (v) => (v ? 'yes' : 'no') },
    { key: 'id', label: 'Edit', fmt: (_, c) => h('button', { type: 'button', class: 'edit', 'data-config': c.id, onclick: () => form.edit(c) }, 'Edit', h('span', { class: 'sr' }, ` ${c.name}`)) },
  ], configs.items, { class: 'configs' })), form.el);
}

const STATS = ['count', 'sum', 'avg', 'min', 'max', 'p50', 'p95', 'p99', 'rate'];
const CONDITIONS = ['threshold_above', 'threshold_below', 'rate_of_change', 'anomaly'];
const SEVERITIES = ['info', 'warning', 'critical'];
const CHANNELS = ['in_app', 'slack', 'email', 'sms'];

function recipientOf(line) {
  const [kind, ...rest] = line.split(':');
  const value = rest.join(':').trim();
  if (['user', 'team'].includes(kind) && value) return { [kind]: value };
  if (line.startsWith('https://') || line.startsWith('http://')) return { slack_webhook: line };
  if (line.startsWith('+')) return { phone: line };
  return { email: line };
}

function recipientLine(r) {
  if (r.user) return `user:${r.user}`;
  if (r.team) return `team:${r.team}`;
  return r.email || r.phone || r.slack_webhook || '';
}

/** The create / edit form; the API's 400 and 409 answers are shown on the field they name. */
function configForm(catalog, ctx) {
  let editing = null;
  const fields = {};
  const errors = {};
  const field = (name, label, control, hint) => {
    const id = `f-${name}`;
    control.id = id;
    control.name = name;
    control.setAttribute('aria-describedby', `${id}-error${hint ? ` ${id}-hint` : ''}`);
    fields[name] = control;
    errors[name] = h('p', { id: `${id}-error`, class: 'field-error' });
    return h('div', { class: 'field', 'data-field': name },
      h('label', { for: id }, label), control,
      hint ? h('p', { id: `${id}-hint`, class: 'hint' }, hint) : null, errors[name]);
  };
  const select = (options, value) => h('select', null, options.map((o) => h('option', { value: o, selected: o === value }, o)));
  const metric = select(catalog.map((m) => m.metric));
  const stat = select(STATS, 'p95');
  const channelBoxes = CHANNELS.map((c) => h('label', { class: 'check' }, h('input', { type: 'checkbox', value: c }), ` ${c}`));
  const channelGroup = h('fieldset', { class: 'field', 'data-field': 'channels', id: 'f-channels' },
    h('legend', null, 'Channels (none: the default of the severity)'), channelBoxes);
  errors.channels = h('p', { id: 'f-channels-error', class: 'field-error' });
  channelGroup.append(errors.channels);
  const formError = h('p', { class: 'error', role: 'alert' });
  const title = h('h2', null, 'New alert configuration');
  const submit = h('button', { type: 'submit' }, 'Create');
  const cancel = h('button', { type: 'button', class: 'secondary', hidden: true, onclick: () => reset() }, 'Cancel edit');
  const form = h('form', { class: 'config-form', novalidate: true, 'aria-labelledby': 'config-form-title' },
    h('div', { class: 'grid' },
      field('name', 'Name', h('input', { type: 'text', autocomplete: 'off' })),
      field('metric', 'Metric', metric),
      field('stat', 'Statistic', stat),
      field('condition', 'Condition', select(CONDITIONS, 'threshold_above')),
      field('threshold', 'Threshold', h('input', { type: 'text', inputmode: 'decimal' })),
      field('window_secs', 'Window (seconds)', h('input', { type: 'text', inputmode: 'numeric', value: '300' })),
      field('for_secs', 'Must hold for (seconds)', h('input', { type: 'text', inputmode: 'numeric', value: '0' })),
      field('cooldown_secs', 'Cooldown (seconds)', h('input', { type: 'text', inputmode: 'numeric', value: '900' })),
      field('severity', 'Severity', select(SEVERITIES, 'warning')),
      field('no_data', 'When there is no data', select(['keep', 'ok', 'alerting'], 'keep')),
      field('dimensions', 'Dimensions', h('textarea', { rows: 2 }), 'One key=value per line, e.g. route=/api/v1/checkout'),
      field('recipients', 'Recipients', h('textarea', { rows: 3 }), 'One per line: an email, +E.164 phone, user:NAME or team:NAME'),
      field('enabled', 'Enabled', h('input', { type: 'checkbox', checked: true })),
      field('auto_resolve', 'Resolve automatically', h('input', { type: 'checkbox', checked: true }))),
    channelGroup, formError, h('div', { class: 'buttons' }, submit, cancel));
  title.id = 'config-form-title';

  const clearErrors = () => {
    formError.textContent = '';
    for (const [name, e] of Object.entries(errors)) {
      e.textContent = '';
      (fields[name] || channelGroup).removeAttribute('aria-invalid');
    }
  };
  const showError = (err) => {
    const root = err.field ? err.field.split(/[.[]/)[0] : err.status === 409 ? 'name' : null;
    if (root && errors[root]) {
      errors[root].textContent = err.field && err.field !== root ? `${err.field}: ${err.message}` : err.message;
      const control = fields[root] || channelGroup;
      control.setAttribute('aria-invalid', 'true');
      control.focus();
      control.scrollIntoView({ block: 'center' });
    } else {
      formError.textContent = err.message;
    }
  };
  const numberOf = (name, parse) => {
    const raw = fields[name].value.trim();
    const v = parse(raw);
    if (raw === '' || !Number.isFinite(v)) {
      throw Object.assign(new Error('must be a number'), { field: name });
    }
    return v;
  };
  const body = () => {
    const lines = (t) => t.value.split('\n').map((l) => l.trim()).filter(Boolean);
    const dims = {};
    for (const l of lines(fields.dimensions)) {
      const [k, ...v] = l.split('=');
      dims[k.trim()] = v.join('=').trim();
    }
    const channels = channelBoxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
    return {
      name: fields.name.value.trim(),
      metric: fields.metric.value,
      stat: fields.stat.value,
      condition: fields.condition.value,
      threshold: numberOf('threshold', Number),
      window_secs: numberOf('window_secs', Number),
      for_secs: numberOf('for_secs', Number),
      cooldown_secs: numberOf('cooldown_secs', Number),
      severity: fields.severity.value,
      no_data: fields.no_data.value,
      dimensions: dims,
      recipients: lines(fields.recipients).map(recipientOf),
      channels: channels.length ? channels : null,
      enabled: fields.enabled.checked,
      auto_resolve: fields.auto_resolve.checked,
    };
  };
  function reset() {
    editing = null;
    form.reset();
    clearErrors();
    title.textContent = 'New alert configuration';
    submit.textContent = 'Create';
    cancel.hidden = true;
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    let payload;
    try {
      payload = body();
    } catch (err) {
      showError(err);
      return;
    }
    try {
      if (editing) await api(`alerts/configs/${editing.id}`, { method: 'PUT', body: payload });
      else await api('alerts/configs', { method: 'POST', body: payload });
      ctx.rerender();
    } catch (err) {
      if (err instanceof ApiError) showError(err);
      else formError.textContent = err.message;
    }
  });
  return {
    el: h('section', { class: 'panel' }, title, form),
    edit(c) {
      reset();
      editing = c;
      title.textContent = `Edit ${c.name} (version ${c.version})`;
      submit.textContent = 'Save';
      cancel.hidden = false;
      for (const k of ['name', 'metric', 'stat', 'condition', 'severity', 'no_data']) fields[k].value = c[k];
      for (const k of ['threshold', 'window_secs', 'for_secs', 'cooldown_secs']) fields[k].value = String(c[k]);
      fields.dimensions.value = Object.entries(c.dimensions || {}).map(([k, v]) => `${k}=${v}`).join('\n');
      fields.recipients.value = (c.recipients || []).map(recipientLine).join('\n');
      fields.enabled.checked = c.enabled;
      fields.auto_resolve.checked = c.auto_resolve;
      for (const b of channelBoxes) b.firstChild.checked = (c.channels || []).includes(b.firstChild.value);
      fields.name.focus();
    },
  };
}

// ---- notifications ----------------------------------------------------------------------

async function notifications(el, ctx) {
  const page = await api('notifications', { query: { limit: 100 } });
  const markAll = h('button', {
    type: 'button',
    disabled: page.unread === 0,
    onclick: async () => {
      await api('notifications/read-all', { method: 'POST' });
      ctx.rerender();
    },
  }, 'Mark all read');
  el.append(header('Notifications', markAll), h('p', null, `${page.unread} unread.`));
  if (!page.items.length) {
    el.append(h('p', { class: 'empty' }, 'No notifications.'));
    return;
  }
  el.append(h('ul', { class: 'notes' }, page.items.map((n) => h('li', { class: n.read_at ? 'read' : 'unread' },
    h('div', { class: 'note-head' }, sevBadge(n.severity), h('strong', null, n.title), h('span', { class: 'when' }, fmtTime(n.created_at))),
    h('p', null, n.body),
    n.read_at ? null : h('button', {
      type: 'button',
      onclick: async () => {
        await api(`notifications/${n.id}/read`, { method: 'POST' });
        ctx.rerender();
      },
    }, 'Mark read', h('span', { class: 'sr' }, ` ${n.title}`))))));
}

export const PAGES = { overview, health, ml, business, alerts, notifications };
