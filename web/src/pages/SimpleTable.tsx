/** A plain table with a header row: `columns` are the headers ('' for an unlabelled actions column). */
import type { ReactNode } from 'react';

export function SimpleTable({ columns, children }: { columns: readonly string[]; children: ReactNode }) {
  return (
    <table className="simple">
      <thead>
        <tr>
          {columns.map((c, i) => (
            <th key={i} scope="col">
              {c === '' ? <span className="sr-only">Actions</span> : c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{children}</tbody>
    </table>
  );
}
