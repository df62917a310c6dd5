// @ts-check
/**
 * Time-series charts as inline SVG, with no library: stacked bars for counts and lines for
 * rates and latencies. Each chart is an image with a text summary for screen readers and a
 * data table behind a disclosure, redrawn when its container changes width. Colours come from
 * the stylesheet (classes series-0, series-1, …), so the charts follow light and dark themes.
 */
import { fmtDateTime, fmtTime, h, replace, uid } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const HEIGHT = 220;
const PAD = { top: 12, right: 14, bottom: 28, left: 56 };

/**
 * @typedef {{ name: string, values: Array<number | null> }} Series
 * @typedef {{
 *   title: string,
 *   kind: "bars" | "lines",
 *   times: number[],
 *   stepMs: number,
 *   series: Series[],
 *   format: (v: number) => string,
 *   yMax?: number,
 *   summary: string,
 * }} ChartSpec
 */

/** @param {string} tag @param {Record<string, string | number>} attrs */
function s(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A "nice" upper bound and tick step for the y axis. @param {number} max */
function niceScale(max) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const rough = max / 4;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= rough) ?? rough;
  return { top: Math.ceil(max / step) * step, step };
}

/** Tick label of a bucket start: time of day within two days, else the date. @param {number} t @param {number} span */
const tickLabel = (t, span) => {
  const d = new Date(t);
  if (span <= 2 * 86_400_000) return fmtTime(t).replace(/:\d\d$/, "");
  return `${d.toLocaleDateString(undefined, { month: "short", day: "numeric" })}`;
};

/** @param {SVGSVGElement} svg @param {ChartSpec} spec @param {number} width */
function draw(svg, spec, width) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(HEIGHT));
  const innerW = Math.max(10, width - PAD.left - PAD.right);
  const innerH = HEIGHT - PAD.top - PAD.bottom;
  const n = spec.times.length;
  const stackTotals = spec.times.map((_, i) => spec.series.reduce((sum, se) => sum + (se.values[i] ?? 0), 0));
  const dataMax = spec.kind === "bars" ? Math.max(0, ...stackTotals) : Math.max(0, ...spec.series.flatMap((se) => se.values.filter((v) => v !== null)).map(Number));
  const { top, step } = niceScale(spec.yMax ?? dataMax);
  const y = (/** @type {number} */ v) => PAD.top + innerH - (v / top) * innerH;
  const slot = innerW / Math.max(1, n);
  const x = (/** @type {number} */ i) => PAD.left + slot * i + slot / 2;

  const grid = s("g", { class: "chart-grid" });
  for (let v = 0; v <= top + step / 2; v += step) {
    grid.appendChild(s("line", { x1: PAD.left, x2: PAD.left + innerW, y1: y(v), y2: y(v) }));
    const label = s("text", { x: PAD.left - 8, y: y(v) + 4, "text-anchor": "end", class: "chart-label" });
    label.textContent = spec.format(v);
    grid.appendChild(label);
  }
  const span = n > 0 ? spec.times[n - 1] - spec.times[0] + spec.stepMs : 0;
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(innerW / 70))));
  for (let i = 0; i < n; i += every) {
    const label = s("text", { x: x(i), y: HEIGHT - 8, "text-anchor": "middle", class: "chart-label" });
    label.textContent = tickLabel(spec.times[i], span);
    grid.appendChild(label);
  }
  svg.appendChild(grid);

  if (spec.kind === "bars") {
    const barW = Math.max(1, Math.min(28, slot * 0.7));
    spec.series.forEach((se, k) => {
      const g = s("g", { class: `series-${k} chart-bars` });
      se.values.forEach((v, i) => {
        if (!v) return;
        const below = spec.series.slice(0, k).reduce((sum, other) => sum + (other.values[i] ?? 0), 0);
        const rect = s("rect", { x: x(i) - barW / 2, y: y(below + v), width: barW, height: Math.max(0.5, y(below) - y(below + v)), rx: Math.min(3, barW / 4) });
        const title = s("title");
        title.textContent = `${fmtDateTime(spec.times[i])}: ${se.name} ${spec.format(v)}`;
        rect.appendChild(title);
        g.appendChild(rect);
      });
      svg.appendChild(g);
    });
  } else {
    spec.series.forEach((se, k) => {
      const g = s("g", { class: `series-${k} chart-line` });
      let d = "";
      let pen = false;
      se.values.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      });
      if (d) g.appendChild(s("path", { d, fill: "none" }));
      se.values.forEach((v, i) => {
        if (v === null) return;
        const dot = s("circle", { cx: x(i), cy: y(v), r: n > 60 ? 1.6 : 2.6 });
        const title = s("title");
        title.textContent = `${fmtDateTime(spec.times[i])}: ${se.name} ${spec.format(v)}`;
        dot.appendChild(title);
        g.appendChild(dot);
      });
      svg.appendChild(g);
    });
  }
  svg.appendChild(s("line", { x1: PAD.left, x2: PAD.left + innerW, y1: y(0), y2: y(0), class: "chart-axis" }));
}

/**
 * A chart inside a card: title, legend, the SVG, and its data as a table.
 * @param {ChartSpec} spec
 * @returns {HTMLElement}
 */
export function chart(spec) {
  const titleId = uid("chart");
  const descId = uid("chart-desc");
  const svg = /** @type {SVGSVGElement} */ (/** @type {unknown} */ (document.createElementNS(SVG, "svg")));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-labelledby", `${titleId} ${descId}`);
  svg.setAttribute("class", "chart-svg");
  const holder = h("div", { class: "chart-holder" });
  holder.appendChild(svg);
  const hasData = spec.series.some((se) => se.values.some((v) => v !== null && v !== 0));
  const table = h("table", { class: "table table-compact" },
    h("thead", null, h("tr", null, h("th", { scope: "col" }, "Time"), spec.series.map((se) => h("th", { scope: "col" }, se.name)))),
    h("tbody", null, spec.times.map((t, i) => spec.series.some((se) => se.values[i] !== null && se.values[i] !== 0)
      ? h("tr", null, h("th", { scope: "row" }, fmtDateTime(t)), spec.series.map((se) => h("td", null, se.values[i] === null ? "—" : spec.format(/** @type {number} */ (se.values[i])))))
      : null)));
  const figure = h("figure", { class: "card chart", "data-chart": spec.title },
    h("figcaption", { class: "chart-head" },
      h("h3", { id: titleId }, spec.title),
      h("ul", { class: "legend" }, spec.series.map((se, k) => h("li", null, h("span", { class: `swatch series-${k}`, "aria-hidden": "true" }), se.name)))),
    h("p", { id: descId, class: "sr-only" }, spec.summary),
    holder,
    hasData ? null : h("p", { class: "chart-empty" }, "No requests in this period."),
    hasData ? h("details", { class: "chart-data" }, h("summary", null, "Show data as a table"), table) : null);

  const render = () => draw(svg, spec, Math.max(240, Math.floor(holder.clientWidth || 600)));
  // Drawn once attached (it needs its width), again when the width changes.
  const observer = new ResizeObserver(() => {
    if (!holder.isConnected) { observer.disconnect(); return; }
    render();
  });
  observer.observe(holder);
  return figure;
}

/** A horizontal gauge: used of limit, for rate-limit state. @param {number} used @param {number} limit @param {string} label */
export function meter(used, limit, label) {
  const ratio = limit > 0 ? Math.min(1, used / limit) : 0;
  const bar = h("div", { class: `meter-fill${ratio >= 0.9 ? " meter-high" : ratio >= 0.7 ? " meter-mid" : ""}` });
  bar.style.width = `${(ratio * 100).toFixed(1)}%`;
  return h("div", { class: "meter", role: "meter", "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": used, "aria-label": label }, bar);
}

/** Redraws an element's chart list. @param {HTMLElement} el @param {HTMLElement[]} charts */
export const showCharts = (el, charts) => replace(el, charts);
