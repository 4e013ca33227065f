// Time-series charts on uPlot (vendored, global `uPlot`): one helper builds a line chart
// sized to its container, redrawn on resize, with a text summary for screen readers.

import { h } from './dom.js';

const PALETTE = ['#1f5fbf', '#c0392b', '#1e8449', '#8e44ad', '#b9770e', '#5d6d7e'];

/**
 * lineChart({title, ts: [ISO strings], series: [{label, values, color?, dash?, scale?}],
 * axes: {y: label, y2?: label}}) -> element holding the chart.
 */
export function lineChart({ title, ts, series, axes = {}, height = 240 }) {
  const box = h('figure', { class: 'chart', 'data-chart': title });
  const caption = h('figcaption', null, title);
  const plot = h('div', { class: 'chart-plot', role: 'img', 'aria-label': summary(title, ts, series) });
  box.append(caption, plot);
  const x = ts.map((t) => Date.parse(t) / 1000);
  const data = [x, ...series.map((s) => s.values.map((v) => (v === null || v === undefined ? null : v)))];
  const scales = { x: { time: true } };
  const uAxes = [{ stroke: '#333' }, { label: axes.y || '', stroke: '#333', size: 60 }];
  if (series.some((s) => s.scale === 'y2')) {
    scales.y2 = { auto: true };
    uAxes.push({ scale: 'y2', side: 1, label: axes.y2 || '', stroke: '#333', size: 60, grid: { show: false } });
  }
  const opts = {
    width: 600,
    height,
    scales,
    axes: uAxes,
    legend: { live: true },
    cursor: { drag: { x: false, y: false } },
    series: [{ label: 'Time' }, ...series.map((s, i) => ({
      label: s.label,
      stroke: s.color || PALETTE[i % PALETTE.length],
      width: 2,
      dash: s.dash,
      scale: s.scale || 'y',
      spanGaps: false,
      points: { show: false },
    }))],
  };
  // uPlot needs the container in the document to measure it: build on the next frame.
  requestAnimationFrame(() => {
    opts.width = Math.max(280, plot.clientWidth || 600);
    const chart = new uPlot(opts, data, plot);
    box.dataset.points = String(x.length);
    const ro = new ResizeObserver(() => {
      const w = Math.max(280, plot.clientWidth);
      if (Math.abs(w - chart.width) > 2) chart.setSize({ width: w, height });
    });
    ro.observe(plot);
  });
  return box;
}

function summary(title, ts, series) {
  const parts = series.map((s) => {
    const vals = s.values.filter((v) => v !== null && v !== undefined);
    if (!vals.length) return `${s.label}: no data`;
    const max = Math.max(...vals);
    const sum = vals.reduce((a, b) => a + b, 0);
    return `${s.label}: max ${+max.toFixed(2)}, total ${+sum.toFixed(2)}`;
  });
  return `${title}, ${ts.length} points. ${parts.join('; ')}.`;
}
