/** Durations as people write them on a command line: `90s`, `10m`, `2h`, `30d`. */
const UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86400 };

/** Seconds, or null when `text` is not a number followed by s, m, h or d. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)([smhd])$/.exec(text.trim());
  return m ? Number(m[1]) * (UNITS[m[2] as string] as number) : null;
}
