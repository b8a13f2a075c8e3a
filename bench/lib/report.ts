import fs from 'node:fs';
import { median, met, ratios, type Figure, type Measure, type Target } from './stats.ts';

function num(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const abs = Math.abs(x);
  return abs >= 100 ? x.toFixed(0) : abs >= 10 ? x.toFixed(1) : abs >= 1 ? x.toFixed(2) : x.toFixed(3);
}

/** `median [min–max]` of one round-by-round series. */
function spread(values: number[], unit = ''): string {
  const suffix = unit ? ` ${unit}` : '';
  return `${num(median(values))}${suffix} [${num(Math.min(...values))}–${num(Math.max(...values))}]`;
}

function measureCell(m: Measure): string {
  return `${m.label}: ${spread(m.values, m.unit)}`;
}

function targetCell(target: Target | undefined, unit: string): string {
  if (!target) return '(context)';
  const op = target.op === '>=' ? '≥' : '≤';
  return target.on === 'ratio' ? `A/B ${op} ${target.value}` : `A ${op} ${target.value} ${unit}`;
}

function resultCell(figure: Figure): string {
  if (figure.error) return 'ERROR';
  const ok = met(figure);
  return ok === undefined ? '' : ok ? 'met' : '**missed**';
}

/** The first line of an error and, when the cause is further down (a server's stderr), its *Error line. */
function errorSummary(error: string): string {
  const lines = error.split('\n').map((l) => l.trim());
  const cause = lines.slice(1).find((l) => /\b\w*Error\b/.test(l));
  return [lines[0], cause].filter(Boolean).join(' … ').replace(/\|/g, '/').slice(0, 200);
}

export function table(figures: Figure[]): string {
  const header = [
    '#',
    'figure',
    'A (median [min–max] over rounds)',
    'B (baseline, same rounds)',
    'A/B per round',
    'target',
    'result',
  ];
  const rows = figures.map((f) =>
    f.error
      ? [f.id, f.title, `error: ${errorSummary(f.error)}`, '', '', '', 'ERROR']
      : [
          f.id,
          f.title,
          measureCell(f.a),
          measureCell(f.b),
          spread(ratios(f)),
          targetCell(f.target, f.a.unit),
          resultCell(f),
        ],
  );
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export function definitions(figures: Figure[]): string {
  return figures.map((f) => `- **${f.id}** — ${f.how}`).join('\n');
}

/**
 * Replaces this mode's generated section of BENCHMARKS.md (between its markers), leaving every
 * hand-written part and the other mode's section as they are; appends the section if it is new.
 */
export function writeSection(file: string, mode: string, body: string): void {
  const begin = `<!-- bench:${mode}:begin -->`;
  const end = `<!-- bench:${mode}:end -->`;
  const section = `${begin}\n${body.trim()}\n${end}`;
  const current = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmarks\n';
  const from = current.indexOf(begin);
  const to = current.indexOf(end);
  const next =
    from !== -1 && to > from
      ? current.slice(0, from) + section + current.slice(to + end.length)
      : `${current.trimEnd()}\n\n${section}\n`;
  fs.writeFileSync(file, next);
}
