/**
 * Aligned text tables, vmadm style: upper-case headers, two spaces between
 * columns, numeric columns right-aligned, no trailing blanks.
 */
export interface TableOptions {
  /** Print the header line (`-H` turns it off). */
  header: boolean;
  /** Per column: true to right-align. By default a column is right-aligned when every filled cell is a number. */
  rightAlign?: readonly boolean[];
}

const NUMERIC = /^-?\d+(\.\d+)?$/;

export function formatTable(columns: readonly string[], rows: readonly (readonly string[])[], opts: TableOptions): string {
  const headers = columns.map((c) => c.toUpperCase());
  const lines = opts.header ? [headers, ...rows] : [...rows];
  if (lines.length === 0) return '';
  const widths = columns.map((_, i) => Math.max(...lines.map((l) => (l[i] ?? '').length)));
  // A column whose every filled cell is a number reads better right-aligned.
  const rightAligned = opts.rightAlign ?? columns.map((_, i) => rows.length > 0 && rows.every((r) => (r[i] ?? '-') === '-' || NUMERIC.test(r[i] ?? '')));
  const render = (line: readonly string[]) =>
    columns
      .map((_, i) => {
        const cell = line[i] ?? '';
        const width = widths[i] ?? 0;
        return rightAligned[i] ? cell.padStart(width) : cell.padEnd(width);
      })
      .join('  ')
      .trimEnd();
  return `${lines.map(render).join('\n')}\n`;
}
