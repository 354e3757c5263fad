/** Reads a JSON document from a file, or from stdin when the name is "-". */
import { readFile } from 'node:fs/promises';
import { DroverError, errorMessage } from '../lib/errors.js';
import type { CliIo } from './context.js';

async function readStream(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

export async function readJsonInput(io: CliIo, file: string): Promise<unknown> {
  const source = file === '-' ? 'stdin' : file;
  let text: string;
  try {
    text = file === '-' ? await readStream(io.stdin()) : await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : errorMessage(err);
    throw new DroverError(code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_SPEC', `Cannot read ${source}: ${why}.`);
  }
  if (text.trim() === '') throw new DroverError('INVALID_SPEC', `${source} is empty; expected a JSON VM record.`);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new DroverError('INVALID_SPEC', `${source} is not valid JSON (${errorMessage(err).replace(/\.$/, '')}).`);
  }
}
