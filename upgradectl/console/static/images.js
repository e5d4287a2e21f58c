// The image facts of an upgrade's detail: each pinned tag found moved (or gone) before a wave, from the status's
// `movedTags`, and what the waves install. tests/console/test_images_js.py runs it under node.

const short = (digest) => String(digest ?? "").slice(0, 19); // sha256: and 12 hex digits

export function movedTagFacts(movedTags, esc) {
  return (movedTags || []).map((m) => [
    `Image tag moved (before wave ${esc(Number(m.wave) + 1)})`,
    `${esc(m.repository)}:${esc(m.tag)} ${m.currentDigest ? `now names ${esc(short(m.currentDigest))}` : "is gone"}; ` +
      (m.pinnedDigestPresent
        ? `the waves install the pinned ${esc(short(m.pinnedDigest))}`
        : `the pinned ${esc(short(m.pinnedDigest))} is gone too: halted`),
  ]);
}
