/**
 * Reports what happens: to the agent's log, to `P/log/` and, for the events
 * that need a human, by e-mail. Reporting never throws: a failure to write
 * an event or send a mail is logged and the agent goes on.
 */
import type { DroverEvent, EventCode, EventLevel } from '../contract/event.js';
import type { Logger } from '../lib/logger.js';
import { errorMessage } from '../lib/errors.js';
import type { EventLog } from '../store/event-log.js';
import type { Notifier } from './notifier.js';

export interface Report {
  level: EventLevel;
  event: EventCode;
  message: string;
  vm?: string;
  email?: boolean;
}

export class EventReporter {
  constructor(
    private readonly host: string,
    private readonly log: EventLog,
    private readonly notifier: Notifier,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async report(r: Report): Promise<void> {
    const event: DroverEvent = { ts: this.now().toISOString(), host: this.host, level: r.level, event: r.event, message: r.message };
    if (r.vm !== undefined) event.vm = r.vm;
    this.logger[r.level]({ event: r.event, vm: r.vm }, r.message);
    const writes: Promise<unknown>[] = [
      this.log.append(event).catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'could not write the event to etcd')),
    ];
    if (r.email && this.notifier.enabled) {
      const subject = `[drover] ${this.host}: ${r.event}${r.vm ? ` ${r.vm}` : ''}`;
      writes.push(
        this.notifier
          .notify(subject, `${event.ts} ${r.level.toUpperCase()} ${r.event}\n\n${r.message}\n\nhost: ${this.host}\n${r.vm ? `vm: ${r.vm}\n` : ''}`)
          .catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'could not send the notification e-mail')),
      );
    }
    await Promise.all(writes);
  }
}
