// The analysis gate's evidence in the console (docs/analysis.md): one small chart per check, each customer's
// mean value over its rounds, the upgraded customers against the control group, from
// GET /api/upgrades/{id}/analysis. tests/console/test_analysis_js.py runs it under node.

/** Each check's customers' mean values by cohort: { check: { upgraded: [[customer, mean]...], control: [...] } }. */
export function cohortMeans(measurements) {
  const sums = new Map(); // check -> cohort -> customer -> [sum, n]
  for (const m of measurements || []) {
    if (m.value === null || m.value === undefined) continue;
    const byCohort = sums.get(m.check) || new Map([["upgraded", new Map()], ["control", new Map()]]);
    sums.set(m.check, byCohort);
    const cohort = byCohort.get(m.cohort);
    if (!cohort) continue;
    const [sum, n] = cohort.get(m.customerId) || [0, 0];
    cohort.set(m.customerId, [sum + Number(m.value), n + 1]);
  }
  const out = {};
  for (const [check, byCohort] of sums) {
    out[check] = {};
    for (const [cohort, customers] of byCohort) {
      out[check][cohort] = [...customers.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([c, [s, n]]) => [c, s / n]);
    }
  }
  return out;
}

/** The charts' HTML: per check a row of dots on one scale, upgraded above control, and the wave's verdict;
 * every value from the API goes through `escape` (the console's own). */
export function analysisCharts(analysis, escape) {
  if (!analysis || !(analysis.checks || []).length) return "";
  const means = cohortMeans(analysis.measurements);
  const latest = (analysis.waves || [])[0];
  const verdictOf = new Map(((latest && latest.checks) || []).map((c) => [c.check, c]));
  const charts = analysis.checks.map((check) => {
    const cohorts = means[check] || { upgraded: [], control: [] };
    const values = [...cohorts.upgraded, ...cohorts.control].map(([, v]) => v);
    const top = values.length ? Math.max(...values) : 0;
    const x = (v) => (top > 0 ? (v / top) * 96 + 2 : 2).toFixed(2);
    const dots = (cohort, y) =>
      cohorts[cohort].map(([c, v]) => `<circle class="${cohort}" cx="${x(v)}%" cy="${y}" r="4"><title>${escape(c)}: ${escape(v.toPrecision(3))}</title></circle>`).join("");
    const verdict = verdictOf.get(check);
    return `<figure class="analysis-chart" data-check="${escape(check)}">
      <figcaption>${escape(check)}${verdict ? ` <span class="status ${escape(verdict.verdict)}">${escape(verdict.verdict)}</span> <span class="muted">${escape(verdict.reason)}</span>` : ""}</figcaption>
      <svg role="img" aria-label="${escape(check)}: upgraded against control" width="100%" height="44">
        <text x="0" y="12" class="muted">upgraded (${cohorts.upgraded.length})</text>${dots("upgraded", 16)}
        <text x="0" y="36" class="muted">control (${cohorts.control.length})</text>${dots("control", 40)}
      </svg></figure>`;
  });
  const head = latest ? `Wave ${latest.wave + 1}: <strong>${escape(latest.verdict)}</strong> (${escape(latest.reason)})` : "measuring…";
  return `<h3>Analysis</h3><p class="analysis-verdict">${head}</p>${charts.join("")}`;
}

// The status's `analysis` (the newest analysed wave) as the detail's facts; with autoRollback, a failed wave rolls
// back by itself, only its customers: its rollback run's status is shown beside the verdict.
export function analysisFacts(state, escape) {
  if (!state) return [];
  const facts = [["Analysis", `wave ${escape(Number(state.wave) + 1)}: ${escape(state.verdict)}`]];
  if (state.rollback) facts.push(["Wave rolled back", `wave ${escape(Number(state.wave) + 1)} only, by itself (${escape(state.rollback)}); the waves that passed keep the new version`]);
  return facts;
}
