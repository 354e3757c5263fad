/** What the host record says about the machine itself. */
import { availableParallelism, networkInterfaces, totalmem } from 'node:os';

/** The first non-loopback IPv4 address, else the first non-loopback IPv6, else 127.0.0.1. */
export function detectIp(): string {
  const all = Object.values(networkInterfaces()).flatMap((list) => list ?? []);
  const external = all.filter((a) => !a.internal);
  return external.find((a) => a.family === 'IPv4')?.address ?? external[0]?.address ?? '127.0.0.1';
}

export function hostCpus(): number {
  return availableParallelism();
}

export function hostMemoryMiB(): number {
  return Math.floor(totalmem() / (1024 * 1024));
}
