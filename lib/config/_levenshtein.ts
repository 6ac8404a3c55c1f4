/**
 * Edit distance, used to suggest the key a user probably meant.
 *
 * @module
 */

/** Levenshtein distance (insertions, deletions, substitutions) between `a` and `b`. */
export function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The candidate closest to `word`, if it is close enough to be a plausible typo: within a third of the
 * word's length (at least 2 edits), or when one contains the other (`port` → `bind_port`).
 */
export function closestMatch(word: string, candidates: readonly string[]): string | undefined {
  const lower = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = levenshtein(lower, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  if (best === undefined) return undefined;
  if (bestDistance <= Math.max(2, Math.floor(word.length / 3))) return best;
  const containing = candidates.filter((c) => lower.length >= 4 && (c.includes(lower) || lower.includes(c)));
  return containing.length === 1 ? containing[0] : undefined;
}
