/** A VM status as a coloured badge (the word is always shown: colour is never the only signal). */
export function StatusBadge({ status }: { status: string | undefined }) {
  const s = status ?? 'UNKNOWN';
  const tone = s === 'RUNNING' ? 'ok' : s === 'ERROR' || s === 'KILLED' ? 'bad' : s === 'STOP' ? 'idle' : 'busy';
  return <span className={`badge badge-${tone}`}>{s}</span>;
}
