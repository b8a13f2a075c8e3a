/**
 * One figure of the table: A (Stowage) and B (its baseline) measured in the same rounds, one value
 * each per round, in alternating order. The ratio is taken per round (A_i / B_i), so a slow
 * stretch of the shared machine affects both sides of the same ratio; the table shows the median
 * ratio and its min–max over the rounds.
 */
export interface Measure {
  label: string;
  unit: string;
  values: number[];
}

export interface Target {
  /** What the target applies to: the A/B ratio, or A's own value (absolute targets). */
  on: 'ratio' | 'a';
  op: '>=' | '<=';
  value: number;
}

export interface Figure {
  id: string;
  title: string;
  /** Exactly what A and B are, for the reader of BENCHMARKS.md. */
  how: string;
  a: Measure;
  b: Measure;
  /** Absent: reported for context, no target. */
  target?: Target;
  /** Set when the figure could not be measured; the other fields are then empty. */
  error?: string;
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function ratios(figure: Figure): number[] {
  return figure.a.values.map((a, i) => a / figure.b.values[i]!);
}

export function met(figure: Figure): boolean | undefined {
  if (!figure.target || figure.error) return undefined;
  const { on, op, value } = figure.target;
  const observed = on === 'ratio' ? median(ratios(figure)) : median(figure.a.values);
  return op === '>=' ? observed >= value : observed <= value;
}

/**
 * Runs A and B once per round, alternating which goes first (A B, B A, A B, …) so that neither
 * side always gets the warmer (or the more disturbed) slot.
 */
export async function alternate<A, B>(
  round: number,
  a: () => Promise<A>,
  b: () => Promise<B>,
): Promise<[A, B]> {
  if (round % 2 === 0) {
    const ra = await a();
    return [ra, await b()];
  }
  const rb = await b();
  return [await a(), rb];
}

/** Rotates the order of several measurements by round (for groups of three or more). */
export async function rotate<T>(round: number, jobs: (() => Promise<T>)[]): Promise<T[]> {
  const results = new Array<T>(jobs.length);
  for (let k = 0; k < jobs.length; k++) {
    const index = (k + round) % jobs.length;
    results[index] = await jobs[index]!();
  }
  return results;
}
