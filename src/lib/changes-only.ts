/** Wraps a line printer so that a line equal to the previous one is not printed again. */
export function changesOnly(print: (line: string) => void): (line: string) => void {
  let last: string | undefined;
  return (line) => {
    if (line !== last) print(line);
    last = line;
  };
}
