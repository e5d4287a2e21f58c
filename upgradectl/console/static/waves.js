// What the console shows of a strategy's waves, from the table the server generates from the strategies'
// registry (/console/strategies.js, upgrader.contract.strategies.console_table): a wave's name and the
// failures it tolerates. tests/console/test_waves_js.py runs these against the server's own rule.

/** The console's name of wave `wave` (0-based) of a `strategy` upgrade: the last label repeats. */
export function waveLabel(strategies, strategy, wave) {
  const labels = (strategies[strategy] || {}).waveLabels || ["wave"];
  return labels[Math.min(wave, labels.length - 1)];
}

/** Failed customers a wave tolerates (upgrader.rollout.planner.tolerated_failures): none in a wave its
 * strategy allows no failure in; else the threshold's count, or its percentage of the wave's size rounded
 * down, computed in decimal from the percentage as written (in floating point 375 x 18.4 / 100 < 69). */
export function tolerated(strategies, strategy, wave, size, threshold) {
  if (((strategies[strategy] || {}).wavesWithoutFailures || []).includes(wave)) return 0;
  if (threshold && "count" in threshold) return Number(threshold.count);
  if (threshold && "percent" in threshold) return share(size, Number(threshold.percent));
  return 0;
}

function share(size, percent) {
  const written = String(percent); // the shortest decimal that reads back as it, as Python's str() writes it
  const match = /^(\d+)(?:\.(\d+))?$/.exec(written);
  if (!match) return Math.floor((size * percent) / 100); // exponent form: below 1e-6 %, nothing at any size
  const fraction = match[2] || "";
  const digits = BigInt(match[1] + fraction);
  return Number((BigInt(size) * digits) / (100n * 10n ** BigInt(fraction.length)));
}
