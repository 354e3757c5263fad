/**
 * How long the agents take to act on a request after a fault ends: a probe
 * VM toggled between running and stopped. Each `probe` writes the opposite
 * request (TO_STOP to a RUNNING VM, REQUESTED_START to a stopped one)
 * through vm-ops and measures, from the moment the write returned, until
 * the agent's first answer (STOPPING or STOP; STARTING or RUNNING), then
 * waits for the end state so that the next probe starts from rest.
 */
import type { Cluster } from '../../helpers/agent-harness.js';
import { changeStatus } from '../../../src/vm-ops/change-status.js';
import { sleep } from './chaos-env.js';
import { vmStoreOf } from './vm-lifecycle.js';

const ANSWERS: Record<string, { answers: string[]; end: string }> = {
  TO_STOP: { answers: ['STOPPING', 'STOP'], end: 'STOP' },
  REQUESTED_START: { answers: ['STARTING', 'RUNNING'], end: 'RUNNING' },
};

async function status(cluster: Cluster, uuid: string): Promise<string | undefined> {
  const vm = await cluster.getVm(uuid).catch(() => undefined);
  return typeof vm?.status === 'string' ? vm.status : undefined;
}

export interface ProbeTiming {
  /** From the call to the moment etcd took the write (it retries while etcd cannot take writes). */
  writeMs: number;
  /** From the write to the agent's first answer. */
  answerMs: number;
}

/**
 * Writes the next request to the probe VM (retrying while etcd is not yet
 * writable) and resolves with how long the write and the agent's first
 * answer took; the VM is at rest again when it resolves.
 */
export async function probe(cluster: Cluster, uuid: string, timeoutMs = 60_000): Promise<ProbeTiming> {
  const called = Date.now();
  const now = await status(cluster, uuid);
  const action = now === 'RUNNING' ? 'stop' : 'start';
  const request = action === 'stop' ? 'TO_STOP' : 'REQUESTED_START';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await changeStatus(vmStoreOf(cluster), { ref: uuid, action, force: false, waitSeconds: null, onProgress: () => undefined });
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(50);
    }
  }
  const written = Date.now();
  const { answers, end } = ANSWERS[request]!;
  let answeredAt: number | null = null;
  for (;;) {
    const s = await status(cluster, uuid);
    if (answeredAt === null && s !== undefined && answers.includes(s)) answeredAt = Date.now();
    if (s === end) return { writeMs: written - called, answerMs: (answeredAt ?? Date.now()) - written };
    if (s === 'ERROR') throw new Error(`the probe VM ${uuid} went to ERROR`);
    if (Date.now() > deadline) throw new Error(`the probe VM ${uuid} did not answer ${request} within ${timeoutMs} ms (status ${s})`);
    await sleep(answeredAt === null ? 20 : 100);
  }
}
